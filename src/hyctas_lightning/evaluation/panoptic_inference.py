"""Panoptic-DeepLab post-processing: class scores, an instance-centre heatmap and centre offsets to a panoptic map.

Every step runs on whole batches with tensor operations (on the GPU when the inputs are there); nothing loops
over pixels or instances:

1. centres: heatmap values above ``threshold`` that are the maximum of their ``nms_kernel`` x ``nms_kernel``
   window (NMS by max-pooling), the ``top_k`` highest per image;
2. grouping: every thing pixel joins the centre nearest to where its offset points;
3. merge: each instance takes the majority class of its thing pixels; stuff pixels keep their class where the
   class covers at least ``stuff_area`` pixels of the image; everything else is void.

Panoptic maps use the encoding of ``hyctas_lightning.data.labels``: ``class * label_divisor + instance``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from hyctas_lightning.data.labels import LABEL_DIVISOR, VOID
from hyctas_lightning.data.panoptic import thing_mask


@dataclass(frozen=True)
class PanopticPostProcess:
    """Post-processing settings (Panoptic-DeepLab's defaults for Cityscapes; COCO uses ``nms_kernel`` 41 and
    ``stuff_area`` 4096).

    Args:
        thing_ids: class indices of the thing classes.
        num_classes: number of classes.
        threshold: centre heatmap values at or below this are no centre.
        nms_kernel: window (odd) of the max-pooling NMS on the heatmap.
        top_k: at most this many centres per image.
        stuff_area: stuff classes with fewer pixels in an image become void there.
    """

    thing_ids: Tuple[int, ...]
    num_classes: int
    threshold: float = 0.1
    nms_kernel: int = 7
    top_k: int = 200
    stuff_area: int = 2048

    def __post_init__(self) -> None:
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError(f"nms_kernel must be a positive odd number, got {self.nms_kernel}")
        if not 0 < self.top_k < LABEL_DIVISOR:
            raise ValueError(f"top_k must be in 1..{LABEL_DIVISOR - 1} (instance ids share the panoptic id with the "
                             f"class), got {self.top_k}")
        if any(not 0 <= k < self.num_classes for k in self.thing_ids):
            raise ValueError(f"thing_ids {list(self.thing_ids)} must be class indices below {self.num_classes}")

    def __call__(self, semantic: torch.Tensor, center: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """Panoptic maps ``(B, H, W)`` from class labels ``(B, H, W)`` (the ignore label or any other value out of
        range is void), centre heatmaps ``(B, 1, H, W)`` and offsets ``(B, 2, H, W)`` in pixels (y, x)."""
        centres, valid = find_centres(center, self.threshold, self.nms_kernel, self.top_k)
        instances = group_pixels(centres, valid, offset)
        is_thing = thing_mask(self.num_classes, self.thing_ids, semantic.device)
        return merge_semantic_and_instance(semantic, instances, is_thing, self.stuff_area)


def find_centres(center: torch.Tensor, threshold: float, nms_kernel: int, top_k: int) -> Tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """Centres ``(B, K, 2)`` (y, x) of each image's strongest NMS-surviving peaks above ``threshold`` and which of
    them are real ``(B, K)``; K is the most any image has (at most ``top_k``), real centres first."""
    heat = center[:, 0]
    batch, height, width = heat.shape
    pooled = F.max_pool2d(heat[:, None], nms_kernel, stride=1, padding=nms_kernel // 2)[:, 0]
    scores = torch.where((heat > threshold) & (heat == pooled), heat, torch.full_like(heat, -1.0)).flatten(1)
    values, index = scores.topk(min(top_k, height * width), dim=1)
    valid = values > 0
    keep = int(valid.sum(1).max()) if batch else 0  # one host sync: the grouping cost scales with it
    index, valid = index[:, :keep], valid[:, :keep]
    return torch.stack([index // width, index % width], -1), valid


GROUPING_CHUNK = 2 ** 25  # pixel x centre distances per chunk: 128 MiB of float32 at a time


def group_pixels(centres: torch.Tensor, valid: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Instance ids ``(B, H, W)``: 1 + the index of the centre nearest to each pixel's position plus its offset,
    0 where an image has no centre."""
    batch, _, height, width = offset.shape
    if centres.shape[1] == 0:
        return torch.zeros(batch, height, width, dtype=torch.long, device=offset.device)
    ys = torch.arange(height, device=offset.device, dtype=torch.float32)[:, None]
    xs = torch.arange(width, device=offset.device, dtype=torch.float32)[None, :]
    target_y = (ys + offset[:, 0].float()).flatten(1)  # (B, HW): where each pixel points
    target_x = (xs + offset[:, 1].float()).flatten(1)
    centre_y, centre_x = centres[..., 0].float()[:, None, :], centres[..., 1].float()[:, None, :]  # (B, 1, K)
    far = torch.where(valid, 0.0, float("inf"))[:, None, :]
    step = max(1, GROUPING_CHUNK // centres.shape[1])
    nearest = torch.cat([_nearest(target_y[:, i:i + step], target_x[:, i:i + step], centre_y, centre_x, far)
                         for i in range(0, height * width, step)], 1) + 1
    return torch.where(valid.any(1)[:, None], nearest, 0).view(batch, height, width)


def _nearest(target_y: torch.Tensor, target_x: torch.Tensor, centre_y: torch.Tensor, centre_x: torch.Tensor,
             far: torch.Tensor) -> torch.Tensor:
    """Index of the nearest valid centre for a chunk of pixels: squared distances by broadcasting, exact in float32
    (a distance matrix product would round coordinates of a few thousand pixels)."""
    distance = (target_y[..., None] - centre_y).square_() + (target_x[..., None] - centre_x).square_()
    return (distance + far).argmin(-1)


def merge_semantic_and_instance(semantic: torch.Tensor, instances: torch.Tensor, is_thing: torch.Tensor,
                                stuff_area: int, label_divisor: int = LABEL_DIVISOR, void: int = VOID
                                ) -> torch.Tensor:
    """The panoptic map ``(B, H, W)``: thing pixels of instance k > 0 take the majority class of instance k's thing
    pixels (ties: the lower class index); stuff classes covering at least ``stuff_area`` pixels of an image keep
    their class (instance 0); the rest is ``void``. ``is_thing`` has one spare False entry (void classes)."""
    batch, height, width = semantic.shape
    num_classes = len(is_thing) - 1
    classes = torch.where((semantic >= 0) & (semantic < num_classes), semantic, num_classes).long()
    thing = is_thing[classes] & (instances > 0)
    slots = int(instances.max()) + 1 if instances.numel() else 1
    image = torch.arange(batch, device=semantic.device)[:, None, None]

    votes = torch.zeros(batch * slots * num_classes, dtype=torch.long, device=semantic.device)
    key = ((image * slots + instances) * num_classes + classes.clamp(max=num_classes - 1))[thing]
    votes.index_add_(0, key, torch.ones_like(key))
    majority = votes.view(batch, slots, num_classes).argmax(-1)  # (B, slots)
    thing_ids = majority.gather(1, instances.flatten(1)).view_as(instances) * label_divisor + instances

    areas = torch.zeros(batch * (num_classes + 1), dtype=torch.long, device=semantic.device)
    areas.index_add_(0, (image * (num_classes + 1) + classes).flatten(), torch.ones_like(classes).flatten())
    large = areas.view(batch, num_classes + 1).gather(1, classes.flatten(1)).view_as(classes) >= stuff_area
    stuff = ~is_thing[classes] & (classes < num_classes) & large

    out = torch.full_like(classes, void)
    out = torch.where(stuff, classes * label_divisor, out)
    return torch.where(thing, thing_ids, out)


def connected_component_panoptic(semantic: torch.Tensor, is_thing: torch.Tensor, stuff_area: int,
                                 label_divisor: int = LABEL_DIVISOR) -> torch.Tensor:
    """The trivial baseline: every connected region (8-connectivity) of one thing class is one instance, stuff as
    in ``merge_semantic_and_instance``. Components beyond ``label_divisor - 1`` per image become void. On the
    CPU (scipy), image by image: it is a yardstick for evaluation, not an inference path."""
    labels = semantic.cpu().numpy()
    things = is_thing.cpu().numpy()
    instances = np.zeros(labels.shape, np.int64)
    structure = np.ones((3, 3), bool)
    for b, image in enumerate(labels):
        count = 0
        for k in np.unique(image):
            if 0 <= k < len(things) - 1 and things[k]:
                components, n = ndimage.label(image == k, structure)
                instances[b] += np.where(components > 0, components + count, 0)
                count += n
    instances[instances >= label_divisor] = 0
    merged = merge_semantic_and_instance(semantic.cpu(), torch.from_numpy(instances), is_thing.cpu(), stuff_area,
                                         label_divisor)
    return merged.to(semantic.device)
