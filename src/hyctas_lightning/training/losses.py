"""Segmentation losses shared by supernet training and retraining."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                      bootstrap_ratio: Optional[float] = None) -> torch.Tensor:
    """Cross-entropy over labelled pixels; with ``bootstrap_ratio`` only the hardest fraction of them counts
    (bootstrapped cross-entropy, e.g. 0.2 = hardest 20%), which focuses training on thin and rare classes."""
    if bootstrap_ratio is None:
        return F.cross_entropy(logits, target, ignore_index=ignore_index)
    if not 0 < bootstrap_ratio <= 1:
        raise ValueError(f"bootstrap_ratio: must be in (0, 1], got {bootstrap_ratio}")
    pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").flatten()
    valid = pixel[(target != ignore_index).flatten()]
    if valid.numel() == 0:
        return pixel.sum() * 0.0
    k = max(1, int(bootstrap_ratio * valid.numel()))
    return valid.topk(k).values.mean()


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Pixel-wise KL(teacher || student) on softened class distributions (in-place distillation)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher.detach() / t, 1), log_target=True,
                    reduction="none").sum(1).mean() * t * t
