"""Parameters and multiply-adds of a network, counted by ``torch.utils.flop_counter`` on the meta device,
so even 1024x2048 costs neither memory nor compute. Attention is counted: on the meta device
``F.scaled_dot_product_attention`` runs as its two batched matrix products, which the counter sees."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hyctas_lightning.search_space import Architecture


@dataclass(frozen=True)
class Profile:
    """The size and cost of a network.

    Args:
        params_m: parameters in millions.
        macs_g: multiply-accumulates of one batch-1 forward, in billions.
        size: (height, width) in pixels the multiply-adds were counted at.
    """

    params_m: float
    macs_g: float
    size: tuple[int, int]

    def to_dict(self) -> dict:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    """Parameters of ``model`` (all of them, trainable or not).

    Args:
        model: the network.
    """
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: Sequence[int], in_chans: int = 3) -> int:
    """Multiply-adds of one batch-1 forward at ``size`` (H, W): the counter's FLOPs halved. Works on a
    meta-device copy; the model itself is untouched.

    Args:
        model: an image-to-logits network.
        size: (height, width) in pixels.
        in_chans: channels of the input.
    """
    meta = model if next(model.parameters()).is_meta else copy.deepcopy(model).to("meta")
    was_training = meta.training
    meta.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.empty(1, in_chans, *size, device="meta"))
    meta.train(was_training)
    return counter.get_total_flops() // 2


def profile_model(model: nn.Module, size: Sequence[int] = (1024, 2048), in_chans: int = 3) -> Profile:
    """Parameters (M) and multiply-adds (G) of any image-to-logits model.

    Args:
        model: the network.
        size: (height, width) in pixels; the paper reports 1024 x 2048.
        in_chans: channels of the input.
    """
    return Profile(count_params(model) / 1e6, count_macs(model, size, in_chans) / 1e9, (int(size[0]), int(size[1])))


def profile_architecture(arch: Architecture, size: Sequence[int] = (1024, 2048), num_classes: int = 19,
                         fch: Optional[int] = None, output_stride: Optional[int] = None,
                         stem_head_width: float = 1.0) -> Profile:
    """Profile the ChildNet of ``arch`` (``fch``, ``output_stride`` and ``stem_head_width`` as ChildNet takes
    them), built directly on the meta device.

    Args:
        arch: the architecture.
        size: (height, width) in pixels.
        num_classes: output classes (19, Cityscapes').
        fch: filter multiplier; None keeps the architecture's.
        output_stride: 8 or 4; None keeps the architecture's.
        stem_head_width: factor on the stem and head channels.
    """
    from hyctas_lightning.models import ChildNet

    with torch.device("meta"):
        model = ChildNet(arch, num_classes, fch=fch, output_stride=output_stride, stem_head_width=stem_head_width)
    return profile_model(model, size)
