"""BatchNorm recalibration: running statistics shared across sub-networks are meaningless for any one of
them, so before a sub-network is evaluated its statistics are re-estimated on training images
(paper section 4.2)."""
from __future__ import annotations

from typing import Callable, Dict, Iterable

import torch
from torch import nn


def _batchnorms(model: nn.Module) -> Dict[str, nn.modules.batchnorm._BatchNorm]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def bn_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """A copy of every BN running statistic (to restore after a recalibration)."""
    return {f"{n}.{k}": b.detach().clone() for n, m in _batchnorms(model).items()
            for k, b in m.named_buffers(recurse=False)}


@torch.no_grad()
def load_bn_state(model: nn.Module, state: Dict[str, torch.Tensor]) -> None:
    for n, m in _batchnorms(model).items():
        for k, b in m.named_buffers(recurse=False):
            b.copy_(state[f"{n}.{k}"])


@torch.no_grad()
def recalibrate_bn(model: nn.Module, forward: Callable[[torch.Tensor], object], batches: Iterable[torch.Tensor]) -> int:
    """Reset BN statistics and re-estimate them as exact averages over ``batches`` (``forward`` runs the
    sub-network on one batch). Leaves the model in eval mode; returns the number of images seen."""
    bns = _batchnorms(model)
    momenta = {n: m.momentum for n, m in bns.items()}
    for m in bns.values():
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the batches
    model.train()
    seen = 0
    for images in batches:
        forward(images)
        seen += images.shape[0]
    for n, m in bns.items():
        m.momentum = momenta[n]
    model.eval()
    if seen == 0:
        raise ValueError("BN recalibration needs at least one batch of training images")
    return seen
