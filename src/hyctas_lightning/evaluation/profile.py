"""Parameters and multiply-adds of a network, counted by ``torch.utils.flop_counter`` on the meta device,
so even 1024x2048 costs neither memory nor compute. Attention is counted: on the meta device
``F.scaled_dot_product_attention`` runs as its two batched matrix products, which the counter sees.

Tracing costs host time per operator, which a search pays for every candidate; the parts of a network that
say what they were built from (a ChildNet's ``parts``) are traced once per those arguments and input shapes,
and later networks reuse the count."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten
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


# (part's class, what it was built from, its inputs' structure and shapes) -> (FLOPs, output structure, shapes and
# dtypes); a search space has a few hundred distinct parts, so the table stays small
PartCount = Tuple[int, TreeSpec, List[Tuple[Tuple[int, ...], torch.dtype]]]
_PART_FLOPS: Dict[Hashable, PartCount] = {}


class _CountedPart(nn.Module):
    """Stands in for a part of a network while its multiply-adds are counted: the first time a (class, build
    arguments, input shapes) is seen the part runs under the counter and its FLOPs and output shapes are kept;
    after that an empty meta output of the kept shapes is returned and the kept FLOPs are added to ``reused``.

    Args:
        part: the part (on the meta device).
        built_from: the arguments it was built from.
        counter: the running counter.
    """

    def __init__(self, part: nn.Module, built_from: Hashable, counter: FlopCounterMode) -> None:
        super().__init__()
        self.part = part
        self.key = (type(part), built_from)
        self.counter = counter
        self.reused = 0

    def forward(self, *args: Any) -> Any:
        leaves, spec = tree_flatten(args)
        key = (self.key, str(spec), tuple(tuple(x.shape) if isinstance(x, torch.Tensor) else x for x in leaves))
        if key in _PART_FLOPS:
            flops, out_spec, shapes = _PART_FLOPS[key]
            self.reused += flops
            return tree_unflatten([torch.empty(s, dtype=t, device="meta") for s, t in shapes], out_spec)
        before = self.counter.get_total_flops()
        out = self.part(*args)
        outs, out_spec = tree_flatten(out)
        shapes = [(tuple(y.shape), y.dtype) for y in outs]
        _PART_FLOPS[key] = (self.counter.get_total_flops() - before, out_spec, shapes)
        return out


def _swap(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` in place of ``model``'s submodule ``name``."""
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, module)


def count_macs(model: nn.Module, size: Sequence[int], in_chans: int = 3,
               parts: Optional[Mapping[str, Hashable]] = None) -> int:
    """Multiply-adds of one batch-1 forward at ``size`` (H, W): the counter's FLOPs halved. Works on a
    meta-device copy; the model itself is untouched (its ``parts`` are put back).

    Args:
        model: an image-to-logits network.
        size: (height, width) in pixels.
        in_chans: channels of the input.
        parts: ``{submodule name: the arguments it was built from}`` (a ChildNet's ``parts``): a submodule whose
            class, arguments and input shapes were counted before, in this call or an earlier one, is not traced
            again. Each must compute a function of those alone, with multiply-adds to match.
    """
    meta = model if next(model.parameters()).is_meta else copy.deepcopy(model).to("meta")
    was_training = meta.training
    meta.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        stand_ins = {name: _CountedPart(meta.get_submodule(name), built, counter)
                     for name, built in (parts or {}).items()}
        for name, stand_in in stand_ins.items():
            _swap(meta, name, stand_in)
        try:
            meta(torch.empty(1, in_chans, *size, device="meta"))
        finally:
            for name, stand_in in stand_ins.items():
                _swap(meta, name, stand_in.part)
    meta.train(was_training)
    return (counter.get_total_flops() + sum(s.reused for s in stand_ins.values())) // 2


def profile_model(model: nn.Module, size: Sequence[int] = (1024, 2048), in_chans: int = 3,
                  parts: Optional[Mapping[str, Hashable]] = None) -> Profile:
    """Parameters (M) and multiply-adds (G) of any image-to-logits model.

    Args:
        model: the network.
        size: (height, width) in pixels; the paper reports 1024 x 2048.
        in_chans: channels of the input.
        parts: submodules counted once per build arguments and input shapes (see :func:`count_macs`).
    """
    macs = count_macs(model, size, in_chans, parts)
    return Profile(count_params(model) / 1e6, macs / 1e9, (int(size[0]), int(size[1])))


def profile_architecture(arch: Architecture, size: Sequence[int] = (1024, 2048), num_classes: int = 19,
                         fch: Optional[int] = None, output_stride: Optional[int] = None,
                         stem_head_width: float = 1.0) -> Profile:
    """Profile the ChildNet of ``arch`` (``fch``, ``output_stride`` and ``stem_head_width`` as ChildNet takes
    them), built directly on the meta device without initialisers; its stem, cells, fusion nodes, head and
    classifier are traced once per build arguments and input shapes across calls (a search's candidates share
    most of them).

    Args:
        arch: the architecture.
        size: (height, width) in pixels.
        num_classes: output classes (19, Cityscapes').
        fch: filter multiplier; None keeps the architecture's.
        output_stride: 8 or 4; None keeps the architecture's.
        stem_head_width: factor on the stem and head channels.
    """
    from hyctas_lightning.models import ChildNet

    model = ChildNet.empty(arch, num_classes, fch=fch, output_stride=output_stride, stem_head_width=stem_head_width)
    return profile_model(model, size, parts=model.parts)
