"""Convolutional cells: plain 3x3 blocks and the lightweight (zoomed + 1x1 bypass) convolution."""
from __future__ import annotations

from typing import Optional

import torch
from timm.layers import DropPath
from torch import nn

from hyctas_lightning.layers import ConvBNAct, bilinear_half, resize_bilinear

from .registry import register_op


class ConvBlock(nn.Module):
    """``depth`` stacked 3x3 conv-BN-ReLU; the first carries the stride.

    Args:
        c_in: input channels at full width (narrower inputs use the leading ones).
        c_out: output channels at full width; ``forward(x, out_channels)`` may ask for fewer.
        stride: 1, or 2 to halve the resolution.
    """

    activation_factor = 3.0
    depth = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            ConvBNAct(c_in if i == 0 else c_out, c_out, 3, stride if i == 0 else 1) for i in range(self.depth))

    def forward(self, x: torch.Tensor, out_channels: Optional[int] = None) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x, out_channels)
        return x


@register_op("conv")
class Conv(ConvBlock):
    """One 3x3 conv-BN-ReLU."""


@register_op("conv_2x")
class Conv2x(ConvBlock):
    """Two stacked 3x3 conv-BN-ReLU."""

    activation_factor = 6.0
    depth = 2


class ZoomedConv(nn.Module):
    """Lightweight convolution (paper section 3.3, fig. 2): the 3x3 convs run at half resolution (bilinear
    down, conv, BN, bilinear up) and a parallel 1x1 conv on the input keeps the full-resolution detail; the
    two are summed and ReLU'd. Down-sampling cells stop at half resolution and need no bypass.

    With a bypass the cell is residual, so its zoomed path carries a ``DropPath`` (probability 0 until a
    retraining schedule raises it; identity in eval mode, so supernet and child still agree).

    Args:
        c_in: input channels at full width (narrower inputs use the leading ones).
        c_out: output channels at full width; ``forward(x, out_channels)`` may ask for fewer.
        stride: 1, or 2 to halve the resolution.
    """

    activation_factor = 3.0
    depth = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.convs = nn.ModuleList(
            ConvBNAct(c_in if i == 0 else c_out, c_out, 3, 1, act=i < self.depth - 1) for i in range(self.depth))
        self.bypass = ConvBNAct(c_in, c_out, 1, act=False) if stride == 1 else None
        self.drop_path = DropPath() if stride == 1 else None

    def forward(self, x: torch.Tensor, out_channels: Optional[int] = None) -> torch.Tensor:
        size = x.shape[-2:]
        y = bilinear_half(x)
        for conv in self.convs:
            y = conv(y, out_channels)
        if self.bypass is not None:
            return self.bypass.add_relu(x, self.drop_path(resize_bilinear(y, size)), out_channels)
        return y.relu_()


@register_op("light_conv")
class LightConv(ZoomedConv):
    """Lightweight convolution with one zoomed 3x3 conv (release ``conv_downup``)."""


@register_op("light_conv_2x")
class LightConv2x(ZoomedConv):
    """Lightweight convolution with two stacked zoomed 3x3 convs (release ``conv_2x_downup``)."""

    activation_factor = 4.0
    depth = 2
