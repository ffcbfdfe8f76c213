"""Fixed-topology parts around the searched cells: stem, fusion nodes, stride-4 decoder."""
from __future__ import annotations

import functools
from typing import Mapping, Sequence

import torch
from torch import nn

from hyctas_lightning.layers import ConvBNAct, copy_prefix_, resize_bilinear
from hyctas_lightning.search_space import channels

resize = resize_bilinear  # the name the heads and blocks have always used


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN with a projected shortcut; the stem's stride-2 stages.

    Args:
        c_in: input channels.
        c_out: output channels.
        stride: stride of the first conv and the shortcut (2 halves the resolution).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(c_in, c_out, 3, stride)
        self.conv2 = ConvBNAct(c_out, c_out, 3, 1, act=False)
        self.shortcut = ConvBNAct(c_in, c_out, 1, stride, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut.add_relu(x, self.conv2(self.conv1(x)))


class Stem(nn.Module):
    """3x3 conv stride 2 -> residual block stride 2 (stride 4, the low-level feature) -> residual block
    stride 2 (stride 8, the input of layer 0). Returns both the stride-4 and the stride-8 maps.

    Channels (release): ``2 * round(2 * fch * width)``, ``2 * round(4 * fch * width)``, ``round(8 * fch * width)``;
    ``width`` is the stem/head width multiplier.

    Args:
        fch: filter multiplier of the network.
        in_chans: channels of the input images.
        width: stem/head width multiplier (the space's ``stem_head_width``).
    """

    def __init__(self, fch: int, in_chans: int = 3, width: float = 1.0) -> None:
        super().__init__()
        c2, c4, c8 = channels(2, fch, width) * 2, channels(4, fch, width) * 2, channels(8, fch, width)
        self.conv = ConvBNAct(in_chans, c2, 3, 2)
        self.block4 = ResidualBlock(c2, c4)
        self.block8 = ResidualBlock(c4, c8)
        self.out_channels = {4: c4, 8: c8}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x4 = self.block4(self.conv(x))
        return x4, self.block8(x4)


class Resample(nn.Module):
    """Bring a sibling from scale index ``src`` to ``dst``: 1x1 projection (+ bilinear up) when it is
    coarser or equal, a chain of stride-2 3x3 convs when it is finer (HRNet exchange).

    Args:
        c_in: channels of the sibling (its full width; narrower inputs use a prefix).
        c_out: output channels (full width).
        src: scale index of the sibling (0, 1, 2 for stride 8, 16, 32).
        dst: scale index it is brought to.
    """

    def __init__(self, c_in: int, c_out: int, src: int, dst: int) -> None:
        super().__init__()
        steps = max(0, dst - src)
        if steps == 0:
            self.convs = nn.ModuleList([ConvBNAct(c_in, c_out, 1, act=False)])
        else:
            self.convs = nn.ModuleList(ConvBNAct(c_in if i == 0 else c_out, c_out, 3, 2, act=i < steps - 1)
                                       for i in range(steps))

    def forward(self, x: torch.Tensor, out_channels: int, size: Sequence[int]) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x, out_channels)
        return resize(x, size)


class FusionNode(nn.Module):
    """The ``fuse`` node (paper section 3.2): concatenate a cell output with its siblings brought to its scale,
    then a 3x3 conv. The concat has one fixed slot per source scale; siblings sharing a scale are summed into
    their slot, and an empty slot is sliced out of the conv's input channels.

    Args:
        scale: scale index of the node (0, 1, 2 for stride 8, 16, 32).
        out_channels: channels of the cell output and of the node's output (full width).
        sources: ``{scale index: channels}`` of the siblings that may be fused in, one concat slot each.
    """

    def __init__(self, scale: int, out_channels: int, sources: Mapping[int, int]) -> None:
        super().__init__()
        self.scale = scale
        self.slots = tuple(sorted(sources))
        self.resample = nn.ModuleDict({str(t): Resample(c, out_channels, t, scale) for t, c in sources.items()})
        self.conv = ConvBNAct(out_channels * (1 + len(self.slots)), out_channels, 3)
        self._index_cache: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, siblings: Sequence[tuple[torch.Tensor, int]]) -> torch.Tensor:
        c = x.shape[1]
        parts, used = [x], []
        for k, t in enumerate(self.slots, start=1):
            same = [self.resample[str(t)](y, c, x.shape[-2:]) for y, s in siblings if s == t]
            if same:
                parts.append(functools.reduce(torch.add, same))
                used.append(k)
        in_index = None if c * len(parts) == self.conv.conv.in_channels else self._input_index(c, tuple(used), x.device)
        return self.conv(torch.cat(parts, 1), c, in_index)

    def _input_index(self, c: int, slots: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """The conv's input channels that the cell output (``c`` channels, slot 0) and the used sibling ``slots``
        occupy; built once per width and slots, so a step launches no index arithmetic."""
        key = (c, slots, device)
        if key not in self._index_cache:
            full = self.conv.out_channels
            self._index_cache[key] = torch.cat([torch.arange(k * full, k * full + c) for k in (0, *slots)]).to(device)
        return self._index_cache[key]

    @torch.no_grad()
    def inherit_(self, src: FusionNode) -> None:
        """Load this (child) node from a supernet node: resample prefixes and the used conv input slots."""
        c, full = self.conv.out_channels, src.conv.out_channels
        device = src.conv.conv.weight.device
        cols = [torch.arange(c, device=device)]
        for t in self.slots:
            copy_prefix_(self.resample[str(t)], src.resample[str(t)])
            k = src.slots.index(t) + 1
            cols.append(torch.arange(k * full, k * full + c, device=device))
        self.conv.conv.weight.copy_(src.conv.conv.weight[:c].index_select(1, torch.cat(cols)))
        copy_prefix_(self.conv.bn, src.conv.bn)


class LowLevelDecoder(nn.Module):
    """Output stride 4: merge the stem's stride-4 feature into the head's stride-8 feature.

    Args:
        c_low: channels of the stem's stride-4 feature.
        c_head: channels of the head's feature (and of the output).
        c_proj: channels the low-level feature is projected to before the concat (48, as in DeepLabv3+).
    """

    def __init__(self, c_low: int, c_head: int, c_proj: int = 48) -> None:
        super().__init__()
        self.proj = ConvBNAct(c_low, c_proj, 1)
        self.fuse = ConvBNAct(c_head + c_proj, c_head, 3)

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.proj(low)
        return self.fuse(torch.cat([resize(x, low.shape[-2:]), low], 1))


def combo_key(strides: Sequence[int]) -> str:
    """Module-dict key of an output combination, e.g. ``"8_32"``.

    Args:
        strides: final strides of the branches.
    """
    return "_".join(str(s) for s in strides)

