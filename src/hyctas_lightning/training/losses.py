"""Segmentation losses shared by supernet training and retraining."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                      bootstrap_ratio: Optional[float] = None, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy over labelled pixels; with ``bootstrap_ratio`` only the hardest fraction of them counts
    (bootstrapped cross-entropy, e.g. 0.2 = hardest 20%), which focuses training on thin and rare classes.
    ``weight`` (N, H, W) scales each pixel's loss before the hardest are chosen (Panoptic-DeepLab up-weights the
    pixels of small instances)."""
    if bootstrap_ratio is None and weight is None:
        return F.cross_entropy(logits, target, ignore_index=ignore_index)
    if bootstrap_ratio is not None and not 0 < bootstrap_ratio <= 1:
        raise ValueError(f"bootstrap_ratio: must be in (0, 1], got {bootstrap_ratio}")
    pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    pixel = (pixel if weight is None else pixel * weight).flatten()
    valid = pixel[(target != ignore_index).flatten()]
    if valid.numel() == 0:
        return pixel.sum() * 0.0
    if bootstrap_ratio is None:
        return valid.mean()
    k = max(1, int(bootstrap_ratio * valid.numel()))
    return valid.topk(k).values.mean()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Pixel-wise KL(teacher || student) on softened class distributions (in-place distillation)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher.detach() / t, 1), log_target=True,
                    reduction="none").sum(1).mean() * t * t


def weighted_regression_loss(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                             kind: str = "mse") -> torch.Tensor:
    """Panoptic-DeepLab's centre (``mse``) and offset (``l1``) losses: the per-pixel loss summed over channels
    and pixels, weighted by ``weight`` (N, H, W), divided by the total weight (0 when nothing has weight)."""
    if kind not in ("mse", "l1"):
        raise ValueError(f"kind: 'mse' or 'l1', got '{kind}'")
    error = (prediction - target) ** 2 if kind == "mse" else (prediction - target).abs()
    return (error * weight[:, None]).sum() / weight.sum().clamp(min=1.0)
