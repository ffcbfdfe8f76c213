"""Whole-image inference with optional test-time augmentation (horizontal flip, multiple scales).

The paper reports single-scale results without flipping; flip and multi-scale are the usual extra evaluation
(e.g. Panoptic-DeepLab's ``MS+Flip``) and only change how the class scores are formed.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from hyctas_lightning.models.blocks import resize

Network = Callable[[torch.Tensor], torch.Tensor]


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"test scales must be a non-empty list of positive factors, got {list(scales)}")
    return scales


def segment(net: Network, images: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = False) -> torch.Tensor:
    """Class scores ``(N, C, H, W)`` at the input resolution.

    A single plain pass returns the network's logits. With several scales or flipping, every pass's logits are
    resized back to the input, turned into probabilities and averaged, so each pass votes with equal weight.
    """
    scales = check_scales(scales)
    if scales == (1.0,) and not flip:
        return net(images)
    size = images.shape[-2:]
    total, passes = torch.zeros((), device=images.device), 0
    for scale in scales:
        scaled = images if scale == 1.0 else F.interpolate(
            images, size=(max(1, round(size[0] * scale)), max(1, round(size[1] * scale))), mode="bilinear",
            align_corners=False)
        for flipped in (False, True) if flip else (False,):
            logits = net(scaled.flip(-1)) if flipped else net(scaled)
            logits = logits.flip(-1) if flipped else logits
            total = total + resize(logits, size).float().softmax(1)
            passes += 1
    return total / passes
