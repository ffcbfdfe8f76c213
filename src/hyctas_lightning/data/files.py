"""Reading dataset files, with errors that name the file and say how to fix it instead of failing deep in a loader."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import List, Tuple, Type, TypeVar

import numpy as np
from PIL import Image

T = TypeVar("T")


class DatasetError(ValueError):
    """Bad or missing data on disk; the message names the file or folder and the fix."""


class MissingSplitError(DatasetError):
    """A split's folder or list file is absent: for an optional split, ``data check`` says absent, not broken."""


def with_layout(message: str, root: Path, layout: str) -> str:
    """Append the expected folder tree: the usual cause is a root one level too high or too low."""
    return f"{message}\nExpected layout (ROOT = {root}):\n{textwrap.indent(layout.rstrip(), '  ')}"


def require_dir(path: Path, what: str, root: Path, layout: str,
                error: Type[DatasetError] = MissingSplitError) -> Path:
    """``path`` if it is a folder, else an error naming it and showing the layout."""
    if not path.is_dir():
        raise error(with_layout(f"{what} not found: {path}", root, layout))
    return path


def require_items(items: List[T], what: str, root: Path, layout: str) -> List[T]:
    """``items`` if there are any; an empty split is an error (never a silent epoch of nothing)."""
    if not items:
        raise DatasetError(with_layout(f"{what} is empty", root, layout))
    return items


def require_root(root: str | Path, layout: str) -> Path:
    """The dataset root as a Path; a missing one is an error of its own, not a missing split."""
    path = Path(root).expanduser()
    return require_dir(path, "dataset root", path, layout, error=DatasetError)


def _decoded(path: Path, missing: str) -> Image.Image:
    """Open ``path`` and decode every pixel now (``load``), so a truncated file fails here, under its own name."""
    if not path.is_file():
        raise DatasetError(missing)
    image = None
    try:
        image = Image.open(path)
        image.load()
        return image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        if image is not None:
            image.close()
        raise DatasetError(f"cannot read {path}: {error}. The file is corrupt or truncated: "
                           f"re-extract or re-download it") from None


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3); grey or CMYK files are converted."""
    with _decoded(path, f"image file missing: {path}") as image:
        return np.asarray(image.convert("RGB"))


def read_label(path: Path, image_path: Path, modes: Tuple[str, ...] = ("L", "P"),
               expected: str = "a single-channel 8-bit PNG (mode L or P) of label ids") -> np.ndarray:
    """The label file of ``image_path`` as a uint8 array, refusing image modes that would decode to other values."""
    missing = f"label missing for image {image_path}: expected {path}. Add the label or remove the image from the split"
    with _decoded(path, missing) as label:
        if label.mode not in modes:
            raise DatasetError(f"label {path} has image mode {label.mode}; expected {expected}")
        return np.asarray(label)


def check_same_size(image_path: Path, image: np.ndarray, label_path: Path, label: np.ndarray) -> None:
    """Labels must cover their image pixel for pixel; a resized label would silently shift every class."""
    if image.shape[:2] != label.shape[:2]:
        (ih, iw), (lh, lw) = image.shape[:2], label.shape[:2]
        raise DatasetError(f"size mismatch: image {image_path} is {iw}x{ih} but its label {label_path} is "
                           f"{lw}x{lh} (width x height). Re-export the label at the image's size")
