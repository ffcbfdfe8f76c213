"""Memory-efficient self-attention cell (paper section 3.3): exact attention inside a channel bottleneck."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from hyctas_lightning.layers import (
    ConvBNAct,
    DerivedWeights,
    DerivedWeightsOwner,
    SlimConv2d,
    attention,
    inference_shortcuts,
)

from .registry import register_op


def _multiple(value: int, base: int) -> int:
    return base * max(1, value // base)


@register_op("mesa")
class MemoryEfficientSelfAttention(DerivedWeightsOwner):
    """1x1 reduce into a bottleneck of ``C/2`` channels, multi-head dot-product attention with query/key
    dimension ``C/8`` and no FFN, 1x1 expand, plus a 1x1 bypass that keeps the uncompressed residue.

    The attention runs through ``layers.attention`` (fused flash / memory-efficient kernels on the GPU, also for
    the narrow heads of slimmed cells). The expand BN starts at zero scale, so a fresh cell begins as its bypass.
    Inner dimensions follow the requested output width, so the cell stays slimmable. Down-sampling is 2x2 average
    pooling.
    The attention path carries a ``DropPath`` for scheduled drop path in retraining (identity in eval mode).
    In eval mode at full width the query, key and value projections run as one conv (weights concatenated once,
    :mod:`hyctas_lightning.layers.inference`).

    Args:
        c_in: input channels at full width (narrower inputs use the leading ones).
        c_out: output channels at full width; ``forward(x, out_channels)`` may ask for fewer.
        stride: 1, or 2 to halve the resolution.
    """

    activation_factor = 6.0
    heads = 2

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        c_b, c_qk = self.dims(c_out)
        self.reduce = ConvBNAct(c_in, c_b, 1)
        self.q = SlimConv2d(c_b, c_qk, 1, bias=False)
        self.k = SlimConv2d(c_b, c_qk, 1, bias=False)
        self.v = SlimConv2d(c_b, c_b, 1, bias=False)
        self.expand = ConvBNAct(c_b, c_out, 1, act=False)
        self.bypass = ConvBNAct(c_in, c_out, 1, act=False)
        self.drop_path = DropPath()
        self._qkv = DerivedWeights()
        nn.init.zeros_(self.expand.bn.weight)

    @classmethod
    def dims(cls, c_out: int) -> tuple[int, int]:
        """(bottleneck channels, query/key channels) for an output width, multiples of the head count."""
        return _multiple(c_out // 2, cls.heads), _multiple(c_out // 8, cls.heads)

    def forward(self, x: torch.Tensor, out_channels: Optional[int] = None) -> torch.Tensor:
        out_channels = out_channels or self.expand.out_channels
        if self.stride == 2:
            x = F.avg_pool2d(x, 2, ceil_mode=True)
        c_b, c_qk = self.dims(out_channels)
        r = self.reduce(x, c_b)
        b, _, h, w = r.shape
        # (b, heads, h*w, dim), contiguous in dim: the fused attention kernels need it, or PyTorch falls back to
        # the math path that materialises the (h*w)^2 scores
        q, k, v = (t.flatten(2).unflatten(1, (self.heads, -1)).transpose(-1, -2).contiguous()
                   for t in self.project(r, c_qk, c_b))
        a = attention(q, k, v)  # (b, heads, h*w, c_b / heads)
        a = a.transpose(-1, -2).reshape(b, c_b, h, w)
        return self.bypass.add_relu(x, self.drop_path(self.expand(a, out_channels)), out_channels)

    def project(self, r: torch.Tensor, c_qk: int, c_b: int) -> Sequence[torch.Tensor]:
        """Query, key and value maps of the bottleneck ``r``: at full width in eval mode one conv whose weights
        are the three concatenated (cached), else the three slimmable convs.

        Args:
            r: the bottleneck map.
            c_qk: query/key channels.
            c_b: value channels.
        """
        q, k, v = self.q, self.k, self.v
        if r.shape[1] != q.in_channels or c_b != v.out_channels or not inference_shortcuts(self):
            return q(r, c_qk), k(r, c_qk), v(r, c_b)
        weight = self._qkv.get((q.weight, k.weight, v.weight), lambda: torch.cat([q.weight, k.weight, v.weight]))
        return F.conv2d(r, weight).split([c_qk, c_qk, c_b], 1)
