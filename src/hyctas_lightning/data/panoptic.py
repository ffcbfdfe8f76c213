"""Panoptic targets (Panoptic-DeepLab): the instance-centre heatmap, the per-pixel offset to the centre and the
loss weights, computed from a semantic mask and a panoptic id map *after* augmentation, so crops, scales and
flips can never leave a centre or an offset pointing at the wrong place.

Panoptic id maps use the encoding of ``labels``: ``class * LABEL_DIVISOR + instance``, crowd regions as a thing
class with instance 0, ``VOID`` for void. COCO-format annotations (a PNG of segment ids plus ``segments_info``)
are converted with ``segments_to_panoptic``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from .files import DatasetError
from .labels import IGNORE_INDEX, LABEL_DIVISOR, VOID


@dataclass(frozen=True)
class PanopticTargetConfig:
    """How panoptic targets are made (the ``panoptic:`` entry of a data module in YAML; Panoptic-DeepLab's values).

    Args:
        sigma: standard deviation in pixels of the Gaussian drawn at each thing instance's centre of mass (default
            8); scale it with the image resolution.
        small_instance_area: instances with fewer pixels than this (after augmentation; default 64 x 64) count as
            small.
        small_instance_weight: weight of a small instance's pixels in the semantic loss (default 3; 1 treats them
            like any other pixel).
    """

    sigma: float = 8.0
    small_instance_area: int = 64 * 64
    small_instance_weight: float = 3.0

    def __post_init__(self) -> None:
        if self.sigma <= 0 or self.small_instance_area < 0 or self.small_instance_weight <= 0:
            raise ValueError(f"panoptic: sigma and small_instance_weight must be positive and small_instance_area "
                             f"non-negative, got {self}")


def thing_mask(num_classes: int, thing_ids: Sequence[int], device: Optional[torch.device] = None) -> torch.Tensor:
    """A boolean lookup ``is_thing[class]`` with one spare entry, so a lookup of any out-of-range class clamped to
    ``num_classes`` (void) reads False.

    Args:
        num_classes: semantic classes.
        thing_ids: class indices of the thing classes.
        device: where the table lives (the batch's device).
    """
    is_thing = torch.zeros(num_classes + 1, dtype=torch.bool, device=device)
    is_thing[list(thing_ids)] = True
    return is_thing


def panoptic_targets(semantic: torch.Tensor, panoptic: torch.Tensor, is_thing: torch.Tensor,
                     config: PanopticTargetConfig = PanopticTargetConfig()) -> Dict[str, torch.Tensor]:
    """Targets of one sample from its (augmented) semantic mask ``(H, W)`` and panoptic id map ``(H, W)``.

    Pixels with the ignore label in ``semantic`` are void unless they belong to a crowd region (padding written
    by the transforms is void whatever its id). Returns ``panoptic`` (int64, void as ``VOID``, crowd kept),
    ``center`` (1, H, W) with a Gaussian peak of 1 at every non-crowd thing instance's rounded centre of mass,
    ``offset`` (2, H, W) from each thing pixel to its instance's centre (y, x), ``center_weight`` (1 on labelled
    pixels, 0 on void and crowd), ``offset_weight`` (1 on thing instance pixels) and ``semantic_weight``
    (``small_instance_weight`` on pixels of small instances, else 1).

    Args:
        semantic: training ids ``(H, W)`` after augmentation.
        panoptic: panoptic ids ``(H, W)`` after augmentation (``class * LABEL_DIVISOR + instance``).
        is_thing: the table of :func:`thing_mask`.
        config: the target settings.
    """
    height, width = semantic.shape
    panoptic = panoptic.long()
    classes = (panoptic // LABEL_DIVISOR).clamp(0, len(is_thing) - 1)
    crowd = is_thing[classes] & (panoptic % LABEL_DIVISOR == 0)
    void = (semantic == IGNORE_INDEX) & ~crowd
    panoptic = torch.where(void, torch.full_like(panoptic, VOID), panoptic)
    things = ~void & ~crowd & is_thing[classes]

    ids, inverse, areas = torch.unique(panoptic[things], return_inverse=True, return_counts=True)
    ys, xs = torch.nonzero(things, as_tuple=True)
    centres = torch.stack([torch.zeros(len(ids), dtype=torch.float64).index_add_(0, inverse, ys.double()),
                           torch.zeros(len(ids), dtype=torch.float64).index_add_(0, inverse, xs.double())], 1)
    centres /= areas[:, None]

    offset = torch.zeros(2, height, width)
    offset[:, ys, xs] = (centres[inverse] - torch.stack([ys, xs], 1)).T.float()
    semantic_weight = torch.ones(height, width)
    semantic_weight[ys, xs] = torch.where(areas[inverse] < config.small_instance_area,
                                          config.small_instance_weight, 1.0).float()
    return {"panoptic": panoptic, "center": gaussian_peaks(centres, height, width, config.sigma)[None],
            "offset": offset, "center_weight": (~void & ~crowd).float(), "offset_weight": things.float(),
            "semantic_weight": semantic_weight}


def gaussian_peaks(centres: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """The pixel-wise maximum of Gaussians (peak 1 at each centre rounded to the nearest pixel, cut off beyond
    3 sigma + 1 as in Panoptic-DeepLab) over an ``(height, width)`` map; ``centres`` is ``(K, 2)`` (y, x).

    Args:
        centres: ``(K, 2)`` instance centres (y, x) in pixels.
        height: map height in pixels.
        width: map width in pixels.
        sigma: standard deviation of each Gaussian in pixels.
    """
    heat = torch.zeros(height * width)
    if len(centres) == 0:
        return heat.view(height, width)
    radius = int(round(3 * sigma + 1))
    steps = torch.arange(-radius, radius + 1)
    g1 = torch.exp(-steps.double() ** 2 / (2 * sigma ** 2))
    kernel = (g1[:, None] * g1[None, :]).float()
    peaks = torch.round(centres).long()
    ys = peaks[:, 0, None, None] + steps[None, :, None]
    xs = peaks[:, 1, None, None] + steps[None, None, :]
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    index = (ys * width + xs)[inside]
    values = kernel.expand(len(centres), -1, -1)[inside]
    return heat.scatter_reduce_(0, index, values, "amax").view(height, width)


def segments_to_panoptic(ids: np.ndarray, segments: Sequence[Mapping[str, Any]], category_index: Mapping[int, int],
                         is_thing: Sequence[bool], where: Path | str, keep_crowd: bool = True) -> np.ndarray:
    """A COCO-format segment-id map (0 = void) and its ``segments_info`` as a panoptic id map (int64).

    Segments are numbered per class in ``segments_info`` order: things from 1, stuff from 0. With ``keep_crowd``
    (ground truth) a crowd segment becomes its class with instance 0; without it (predictions, which have no
    crowd) every segment is an ordinary one. ``where`` names the annotation in errors.

    Args:
        ids: the PNG's segment ids ``(H, W)`` (0: void).
        segments: the ``segments_info`` entries (``id``, ``category_id``, optional ``iscrowd``).
        category_index: ``{category_id: class index}``.
        is_thing: per class index, whether it is a thing class.
        where: the annotation's file, named in errors.
        keep_crowd: keep crowd segments as instance 0 (ground truth); False for predictions.
    """
    keys, values, counts = [0], [VOID], {}
    for segment in segments:
        category = segment["category_id"]
        if category not in category_index:
            raise DatasetError(f"{where}: segment {segment['id']} has category_id {category}, which is not among "
                               f"the categories {sorted(category_index)}")
        k = category_index[category]
        crowd = keep_crowd and bool(segment.get("iscrowd", 0))
        if crowd and not is_thing[k]:
            raise DatasetError(f"{where}: segment {segment['id']} is a crowd of stuff category {category}; only "
                               "thing categories can be crowds")
        instance = 0 if crowd else counts.get(k, int(is_thing[k]))
        if not crowd:
            counts[k] = instance + 1
        if instance >= LABEL_DIVISOR:
            raise DatasetError(f"{where}: more than {LABEL_DIVISOR - 1} segments of category {category}")
        keys.append(int(segment["id"]))
        values.append(k * LABEL_DIVISOR + instance)
    keys_a, values_a = np.asarray(keys, np.int64), np.asarray(values, np.int64)
    order = np.argsort(keys_a)
    position = np.clip(np.searchsorted(keys_a[order], ids), 0, len(keys_a) - 1)
    if not np.array_equal(keys_a[order][position], ids):
        unknown = sorted(set(np.unique(ids).tolist()) - set(keys))
        raise DatasetError(f"{where}: segment ids {unknown[:10]} are in the PNG but not in segments_info")
    return values_a[order][position]
