"""BatchNorm recalibration: running statistics shared across sub-networks are meaningless for any one of
them, so before a sub-network is evaluated its statistics are re-estimated on training images
(paper section 4.2)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, Union

import torch
from torch import nn

from hyctas_lightning.layers import SlimBatchNorm2d


def _batchnorms(model: nn.Module) -> Dict[str, nn.modules.batchnorm._BatchNorm]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@dataclass(frozen=True)
class Stacked:
    """Equal batches of calibration images stacked for one pass; every BatchNorm (all :class:`SlimBatchNorm2d`)
    still normalises and counts each batch on its own, so the statistics are those of the batches run one by one.

    Args:
        images: the batches concatenated along the batch dimension.
        batches: how many batches ``images`` holds.
    """

    images: torch.Tensor
    batches: int


def stacks_batches(model: nn.Module) -> bool:
    """Whether ``model``'s BatchNorm layers can be recalibrated on :class:`Stacked` batches."""
    return _all_slim(_batchnorms(model))


def _all_slim(bns: Dict[str, nn.Module]) -> bool:
    return all(isinstance(m, SlimBatchNorm2d) for m in bns.values())


@contextmanager
def _groups(bns: Dict[str, nn.Module], groups: int) -> Iterator[None]:
    if groups == 1:  # a plain batch: nothing to set on every layer
        yield
        return
    if not _all_slim(bns):
        raise ValueError("stacked calibration batches need every BatchNorm to be a SlimBatchNorm2d")
    for m in bns.values():
        m.groups = groups
    try:
        yield
    finally:
        for m in bns.values():
            m.groups = 1


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
def recalibrate_bn(model: nn.Module, forward: Callable[[torch.Tensor], object],
                   batches: Iterable[Union[torch.Tensor, Stacked]]) -> int:
    """Reset BN statistics and re-estimate them as exact averages over ``batches`` (``forward`` runs the
    sub-network on one batch or one :class:`Stacked` set of batches). Leaves the model in eval mode; returns the
    number of images seen.

    Args:
        model: the network whose BatchNorm layers are recalibrated.
        forward: runs the sub-network on a tensor of images.
        batches: training images, batch by batch or stacked.
    """
    bns = _batchnorms(model)
    momenta = {n: m.momentum for n, m in bns.items()}
    for m in bns.values():
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the batches
    model.train()
    seen = 0
    for batch in batches:
        images, groups = (batch.images, batch.batches) if isinstance(batch, Stacked) else (batch, 1)
        with _groups(bns, groups):
            forward(images)
        seen += images.shape[0]
    for n, m in bns.items():
        m.momentum = momenta[n]
    model.eval()
    if seen == 0:
        raise ValueError("BN recalibration needs at least one batch of training images")
    return seen
