"""Heads, registered by name: the *aggregation head* brings a network's final branches to one stride-8 map (paper
section 3.2: one per output combination in the supernet), the *classifier* turns that map into logits.

An aggregation head is built as ``cls(strides, channels, width)``: ``strides`` the branches' final strides (one
output combination), ``channels[end][s]`` the channels of branch ``end``'s last feature at stride ``s`` (every
stride from 8 to ``end``; the supernet passes its full widths), ``width[s]`` the head's own channels at stride
``s``. It exposes ``out_channels`` and ``forward(feats) -> Tensor`` on the stride-8 grid, where ``feats[end][s]``
are the tensors of :func:`hyctas_lightning.models.graph.walk`. It must be slimmable in its inputs (convolutions
read the leading channels they are given, :mod:`hyctas_lightning.layers`), so that a child built at exact widths
inherits the supernet's head with ``copy_prefix_``.

A classifier is built as ``cls(in_channels, num_classes, output_stride)``, exposes ``out_channels`` (the classes)
and maps the head's map (after the stride-4 decoder when the output stride is 4) to logits at that resolution.
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hyctas_lightning.layers import ConvBNAct, DerivedWeights, DerivedWeightsOwner, attention, inference_shortcuts
from hyctas_lightning.ops import build_op
from hyctas_lightning.registry import Registry
from hyctas_lightning.search_space import SCALES, channels

from .blocks import resize

HEADS: Registry[Callable[..., nn.Module]] = Registry("aggregation head")
CLASSIFIERS: Registry[Callable[..., nn.Module]] = Registry("classifier")
Features = Mapping[int, Mapping[int, torch.Tensor]]


def register_head(name: str, *, overwrite: bool = False) -> Callable:
    """Register an aggregation head class (contract in the module doc) under ``name``.

    Args:
        name: the name YAML and ``build_head`` select it by.
        overwrite: replace an existing head of that name instead of raising.
    """
    return HEADS.register(name, overwrite=overwrite)


def register_classifier(name: str, *, overwrite: bool = False) -> Callable:
    """Register a classifier class (contract in the module doc) under ``name``.

    Args:
        name: the name YAML and ``build_classifier`` select it by.
        overwrite: replace an existing classifier of that name instead of raising.
    """
    return CLASSIFIERS.register(name, overwrite=overwrite)


def build_head(name: str, strides: Sequence[int], branch_channels: Mapping[int, Mapping[int, int]],
               width: Mapping[int, int]) -> nn.Module:
    """The aggregation head registered as ``name``.

    Args:
        name: a name in ``HEADS`` (``progressive``, ``plain`` or a plugin's).
        strides: final strides of the branches.
        branch_channels: ``branch_channels[end][s]``, channels of branch ``end``'s last feature at stride ``s``.
        width: the head's own channels per stride (:func:`head_widths`).
    """
    return HEADS.get(name)(tuple(strides), branch_channels, width)


def build_classifier(name: str, in_channels: int, num_classes: int, output_stride: int = 8) -> nn.Module:
    """The classifier registered as ``name``.

    Args:
        name: a name in ``CLASSIFIERS`` (``linear``, ``attention`` or a plugin's).
        in_channels: channels of the head's map.
        num_classes: output classes.
        output_stride: stride of the map it classifies (8 or 4).
    """
    return CLASSIFIERS.get(name)(in_channels, num_classes, output_stride)


# ---------------------------------------------------------------------------------------------- aggregation heads
@register_head("plain")
class PlainHead(nn.Module):
    """Per final branch a slimmable 1x1 conv to ``width[8]`` channels, bilinear up to stride 8, concat, 3x3 conv:
    one jump per branch, no skip features.

    Args:
        strides: final strides of the network's branches (one output combination, e.g. ``(8, 32)``).
        channels: ``channels[end][s]``, channels of branch ``end``'s last feature at stride ``s``.
        width: the head's own channels at stride 8, 16 and 32 (:func:`head_widths`).
    """

    def __init__(self, strides: Sequence[int], channels: Mapping[int, Mapping[int, int]],
                 width: Mapping[int, int]) -> None:
        super().__init__()
        self.strides = tuple(strides)
        c = width[8]
        self.proj = nn.ModuleDict({str(s): ConvBNAct(channels[s][s], c, 1) for s in self.strides})
        self.fuse = ConvBNAct(c * len(self.strides), c, 3)
        self.out_channels = c

    def forward(self, feats: Features) -> torch.Tensor:
        size = feats[self.strides[0]][8].shape[-2:]
        return self.fuse(torch.cat([resize(self.proj[str(s)](feats[s][s]), size) for s in self.strides], 1))


class Refinement(nn.Module):
    """One branch brought back to stride 8 through its own skip features (paper section 3.2, the release's
    per-branch refinement): per step a 1x1 conv-BN to the head width of the next finer stride, bilinear x2 to
    the size of the branch's last feature there, concat with it, 3x3 conv-BN-ReLU. A branch that ends at stride
    8 only gets its 1x1 conv-BN-ReLU to the head width.

    Every input is read by its leading channels: the projected map comes first in each concat with a fixed
    width, so a narrower skip feature is just a shorter prefix of the 3x3 conv's input channels.

    Args:
        end: the branch's final stride (8, 16 or 32).
        channels: channels of the branch's last feature at every stride from 8 to ``end``.
        width: the head's own channels at stride 8, 16 and 32.
    """

    def __init__(self, end: int, channels: Mapping[int, int], width: Mapping[int, int]) -> None:
        super().__init__()
        self.steps = tuple(s for s in (32, 16) if s <= end)
        self.proj = ConvBNAct(channels[8], width[8], 1) if not self.steps else None
        self.lateral, self.refine = nn.ModuleList(), nn.ModuleList()
        c = channels[end]
        for s in self.steps:
            fine = s // 2
            self.lateral.append(ConvBNAct(c, width[fine], 1, act=False))
            self.refine.append(ConvBNAct(width[fine] + channels[fine], width[fine], 3))
            c = width[fine]
        self.end = end

    def forward(self, feats: Mapping[int, torch.Tensor]) -> torch.Tensor:
        x = feats[self.end]
        if self.proj is not None:
            return self.proj(x)
        for s, lateral, refine in zip(self.steps, self.lateral, self.refine):
            skip = feats[s // 2]
            x = refine(torch.cat([resize(lateral(x), skip.shape[-2:]), skip], 1))
        return x


class FeatureFusion(nn.Module):
    """The branches' stride-8 maps, concatenated, through a 1x1 conv-BN-ReLU and re-weighted per channel by
    squeeze-excitation, ``x * (1 + se(x))`` (the release's feature fusion, reduction 1). The excitation convs
    carry biases instead of BatchNorm, so the head also trains on batches of one image.

    Args:
        c: channels in and out (all branches' stride-8 maps together).
    """

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = ConvBNAct(c, c, 1)
        self.excite = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, c, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return torch.addcmul(x, x, self.excite(x.mean((2, 3), keepdim=True)))  # x * (1 + se) in one op


@register_head("progressive")
class ProgressiveHead(nn.Module):
    """Feature aggregation head of the paper (section 3.2) as the release builds it: every final branch is
    refined progressively back to stride 8 with its own skip features (:class:`Refinement`), and the branches'
    stride-8 maps are fused by :class:`FeatureFusion` into ``len(strides) * width[8]`` channels.

    Args:
        strides: final strides of the network's branches (one output combination, e.g. ``(8, 32)``).
        channels: ``channels[end][s]``, channels of branch ``end``'s last feature at stride ``s``.
        width: the head's own channels at stride 8, 16 and 32 (:func:`head_widths`).
    """

    def __init__(self, strides: Sequence[int], channels: Mapping[int, Mapping[int, int]],
                 width: Mapping[int, int]) -> None:
        super().__init__()
        self.strides = tuple(strides)
        self.branches = nn.ModuleDict({str(s): Refinement(s, channels[s], width) for s in self.strides})
        self.out_channels = width[8] * len(self.strides)
        self.fusion = FeatureFusion(self.out_channels)

    def forward(self, feats: Features) -> torch.Tensor:
        return self.fusion(torch.cat([self.branches[str(s)](feats[s]) for s in self.strides], 1))


# ---------------------------------------------------------------------------------------------------- classifiers
@register_classifier("linear")
class LinearClassifier(nn.Conv2d):
    """A 1x1 convolution to the classes.

    Args:
        in_channels: channels of the head's map.
        num_classes: output classes.
        output_stride: stride of the input map; unused here (part of the classifier contract).
    """

    def __init__(self, in_channels: int, num_classes: int, output_stride: int = 8) -> None:
        super().__init__(in_channels, num_classes, 1)


class PooledAttention(DerivedWeightsOwner):
    """Global self-attention on a map ``pool`` times coarser (the release's attention head block): 1x1
    conv-BN-ReLU, bilinear down, single-head dot-product attention with query/key width C/8 (release; rounded up
    to a multiple of 8, so the GPU's fused attention kernels also take it in half precision) and value width C
    added to its input (``F.scaled_dot_product_attention``), bilinear back up, 1x1 conv-BN starting at zero
    scale, plus the input, ReLU. A fresh block is the identity on its (non-negative) input. In eval mode the
    query, key and value projections run as one conv (weights and biases concatenated once).

    Args:
        c: channels in and out.
        pool: downsampling factor before attention; larger is cheaper (attention cost grows with the square of
            the pooled pixel count) but coarser.
    """

    def __init__(self, c: int, pool: int) -> None:
        super().__init__()
        self.pool = pool
        self.reduce = ConvBNAct(c, c, 1)
        c_qk = 8 * -(-c // 64)  # C/8 rounded up to a multiple of 8
        self.q = nn.Conv2d(c, c_qk, 1)
        self.k = nn.Conv2d(c, c_qk, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.expand = ConvBNAct(c, c, 1, act=False)
        self._qkv = DerivedWeights()
        nn.init.zeros_(self.expand.bn.weight)

    def project(self, r: torch.Tensor) -> Sequence[torch.Tensor]:
        """Query, key and value maps of ``r``: in eval mode one conv over the concatenated weights (cached).

        Args:
            r: the pooled map.
        """
        convs = (self.q, self.k, self.v)
        if not inference_shortcuts(self):
            return tuple(t(r) for t in convs)
        weight, bias = self._qkv.get([p for t in convs for p in (t.weight, t.bias)], lambda: (
            torch.cat([t.weight for t in convs]), torch.cat([t.bias for t in convs])))
        return F.conv2d(r, weight, bias).split([t.out_channels for t in convs], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        r = resize(self.reduce(x), ((h + self.pool - 1) // self.pool, (w + self.pool - 1) // self.pool))
        b, c, hp, wp = r.shape
        q, k, v = (t.flatten(2).transpose(1, 2).unsqueeze(1).contiguous() for t in self.project(r))
        a = attention(q, k, v).squeeze(1).transpose(1, 2).reshape(b, c, hp, wp)
        return self.expand.add_relu(resize(r + a, (h, w)), x)


@register_classifier("attention")
class AttentionClassifier(nn.Module):
    """The release's semantic head: attention at stride 16 (:class:`PooledAttention`; it pools by
    ``16 / output_stride``), a ``light_conv_2x`` cell, a 3x3 conv-BN-ReLU and a 1x1 conv to the classes. Its
    middle width is the input width up to 256 channels and half of it beyond (release).

    Args:
        in_channels: channels of the head's map.
        num_classes: output classes.
        output_stride: stride of the input map (8 or 4), so attention always runs at stride 16.
    """

    def __init__(self, in_channels: int, num_classes: int, output_stride: int = 8) -> None:
        super().__init__()
        mid = in_channels if in_channels <= 256 else in_channels // 2
        self.attention = PooledAttention(in_channels, max(1, 16 // output_stride))
        self.block = build_op("light_conv_2x", in_channels, mid)
        self.conv = ConvBNAct(mid, mid, 3)
        self.predict = nn.Conv2d(mid, num_classes, 1)
        self.out_channels = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.conv(self.block(self.attention(x))))


def head_widths(fch: int, width: float = 1.0) -> Dict[int, int]:
    """A head's own channels at stride 8, 16 and 32: the channel rule at the stem/head width ``width``.

    Args:
        fch: filter multiplier of the network.
        width: factor on the channel rule (the space's ``stem_head_width``).
    """
    return {s: channels(s, fch, width) for s in SCALES}
