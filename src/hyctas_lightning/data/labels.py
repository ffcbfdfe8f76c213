"""Raw label values (ids or colours) to training ids, the panoptic id encoding, and colour palettes for datasets that
publish none."""
from __future__ import annotations

import colorsys
from pathlib import Path
from typing import List, Mapping, Tuple

import numpy as np

from .files import DatasetError

IGNORE_INDEX = 255
# Panoptic maps hold ``class * LABEL_DIVISOR + instance`` per pixel (Panoptic-DeepLab's encoding): stuff has
# instance 0, thing instances count from 1, and a thing class with instance 0 is a crowd region (as in Cityscapes'
# instanceIds). Void pixels hold ``VOID``, whose class (the ignore label) is no class.
LABEL_DIVISOR = 1000
VOID = IGNORE_INDEX * LABEL_DIVISOR
Colour = Tuple[int, int, int]


class LabelMap:
    """Maps raw 8-bit label values to training ids through one 256-entry table lookup.

    Every raw value has to be listed: an unknown value means a wrong dataset, a wrong label file or a broken
    conversion, so it is an error naming the file and the values rather than a silent ignore.

    Args:
        mapping: ``{raw value: training id}`` for every value a label may hold (``IGNORE_INDEX`` for void).
        known: the known raw values in words, quoted by the error for an unknown one.
        fix: what the user should do about an unknown value, appended to that error.
    """

    def __init__(self, mapping: Mapping[int, int], known: str, fix: str) -> None:
        self.table = np.full(256, -1, np.int16)
        for raw, train_id in mapping.items():
            self.table[raw] = train_id
        self.known = known
        self.fix = fix

    def apply(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Training ids (uint8, ``IGNORE_INDEX`` for void) of the raw label read from ``path``.

        Args:
            raw: the raw 8-bit label (H, W).
            path: the label's file, named in errors.
        """
        mapped = self.table[raw]
        unknown = mapped < 0
        if unknown.any():
            values = np.unique(raw[unknown]).tolist()
            raise DatasetError(f"label {path} has values {values} outside the known set ({self.known}). {self.fix}")
        return mapped.astype(np.uint8)


class ColourMap:
    """Maps the colours of RGB label images to training ids, for annotations painted as colours rather than ids.

    Every colour has to be listed, as with ``LabelMap``: an unknown colour is a mislabelled pixel, a blurred edge
    (a mask saved as JPEG or resized with interpolation) or a class missing from the palette.

    Args:
        mapping: ``{(r, g, b): training id}`` for every colour a label may hold (``IGNORE_INDEX`` for void).
        fix: what the user should do about an unknown colour, appended to that error.
    """

    def __init__(self, mapping: Mapping[Colour, int], fix: str) -> None:
        codes = np.array([_code(np.asarray(colour)) for colour in mapping], np.int64)
        order = np.argsort(codes)
        self.codes = codes[order]
        self.ids = np.array(list(mapping.values()), np.uint8)[order]
        self.fix = fix

    def apply(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        """Training ids (uint8, ``IGNORE_INDEX`` for void) of the (H, W, 3) uint8 label read from ``path``.

        Args:
            rgb: the label's colours.
            path: the label's file, named in errors.
        """
        codes = _code(rgb)
        where = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        unknown = self.codes[where] != codes
        if unknown.any():
            found = np.unique(codes[unknown])
            shown = ", ".join(str(tuple(int(c) >> s & 255 for s in (16, 8, 0))) for c in found[:5])
            more = f" and {len(found) - 5} more" if len(found) > 5 else ""
            raise DatasetError(f"label {path} has colours {shown}{more} that are not in the palette. {self.fix}")
        return self.ids[where]


def _code(rgb: np.ndarray) -> np.ndarray:
    """Colours as single integers (``r << 16 | g << 8 | b``), for one lookup per pixel."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]


def generated_palette(count: int) -> List[Colour]:
    """Distinct, deterministic colours: hues stepped by the golden ratio, three brightness levels.

    Args:
        count: colours wanted.
    """
    colours = []
    for k in range(count):
        hue = (k * 0.618033988749895) % 1.0
        value = (1.0, 0.75, 0.5)[k % 3]
        r, g, b = colorsys.hsv_to_rgb(hue, 0.65, value)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours
