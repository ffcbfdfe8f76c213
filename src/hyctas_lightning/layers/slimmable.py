"""Slimmable layers: one full-width weight, run at any leading slice of its channels.

A supernet cell holds each op once at full width; a sub-network asks for fewer output channels and gets the
leading rows of the weight. A standalone child built at exactly those widths and loaded with
``copy_prefix_`` computes the same function, because it runs the very same layer code.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .functional import conv2d_add_relu, conv2d_relu, resize_bilinear
from .inference import DerivedWeights, DerivedWeightsOwner, inference_shortcuts


class SlimConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose forward takes the wanted output channels; input channels follow ``x``.

    ``in_index`` picks non-leading input channels (the fixed slots of a fusion unit)."""

    def forward(self, x: torch.Tensor, out_channels: Optional[int] = None,  # type: ignore[override]
                in_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        rows = self.out_channels if out_channels is None else out_channels
        cols = weight.shape[1] if in_index is not None else x.shape[1]
        # a slice of a parameter costs a view forward and a zero-filled full-size gradient plus a copy backward:
        # at full width (a child's every layer, the largest sub-network) the parameter is used as it is
        narrowed = (rows != weight.shape[0], cols != weight.shape[1])
        if narrowed[0] and bias is not None:
            bias = bias[:rows]
        if all(narrowed) or (any(narrowed) and not weight.is_contiguous()):
            # one strided view of the leading rows and columns: its gradient is one zero fill in the weight's own
            # layout, where two slices fill two, and where a channels-last weight's contiguous slice gradient is
            # copied into its layout by autograd
            weight = weight.as_strided((rows, cols, *weight.shape[2:]), weight.stride())
        elif narrowed[0]:
            weight = weight[:rows]
        elif narrowed[1]:
            weight = weight[:, :cols]
        if in_index is not None:
            weight = weight.index_select(1, in_index)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)


class SlimBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the leading ``x.shape[1]`` channels; running statistics are shared across widths and
    recalibrated per sub-network before it is evaluated (paper section 4.2).

    ``num_batches_tracked`` counts the batches of a cumulative average only (``momentum=None``, as BN
    recalibration sets it): with a momentum the count is unused, and skipping it saves a GPU launch per layer and
    step. The cumulative average's factor ``1 / count`` comes from a host-side copy of the count, so recalibrating
    never waits for the GPU.

    With ``groups`` set to G > 1 (recalibration, :func:`hyctas_lightning.evaluation.batchnorm.recalibrate_bn`), a
    training-mode input holds G equal batches stacked: each is normalised by its own statistics and counted as one
    batch of the cumulative average, as if the G batches had run one after the other, in one pass instead of G.

    Args:
        num_features: channels at full width.
        eps: added to the variance for numerical stability.
        momentum: weight of a new batch in the running statistics (None: cumulative average).
        affine: learnable scale and shift.
        track_running_stats: keep running statistics for evaluation.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self._count: Optional[int] = 0
        self.groups = 1

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        self._count = 0

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._count = None  # read back from the loaded buffer when a cumulative average next needs it

    def _counted(self, batches: int) -> tuple[int, int]:
        """Add ``batches`` to the cumulative average's count; returns the counts before and after."""
        if self._count is None:
            self._count = int(self.num_batches_tracked)
        before = self._count
        self._count += batches
        self.num_batches_tracked.add_(batches)
        return before, self._count

    def _cumulative_factor(self) -> float:
        return 1.0 / self._counted(1)[1]

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        """Training mode over ``self.groups`` equal batches stacked in ``x`` (see the class docstring)."""
        g, c = self.groups, x.shape[1]
        if self.momentum is not None or not self.track_running_stats or x.shape[0] % g:
            raise ValueError(f"BatchNorm over {g} stacked batches needs a cumulative average (momentum None) and a "
                             f"batch divisible by {g}, got momentum {self.momentum} and {x.shape[0]} images")
        xs = x.unflatten(0, (g, -1))
        var, mean = torch.var_mean(xs, dim=(1, 3, 4), correction=0, keepdim=True)
        n = xs.shape[1] * xs.shape[3] * xs.shape[4]
        before, after = self._counted(g)
        for stat, batch in ((self.running_mean, mean), (self.running_var, var * (n / max(n - 1, 1)))):
            stat[:c].mul_(before / after).add_(batch.view(g, c).sum(0), alpha=1.0 / after)
        y = (xs - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = torch.addcmul(self.bias[:c, None, None], y, self.weight[:c, None, None])
        return y.flatten(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if x.is_meta:  # multiply-adds are being counted (none here): skip PyTorch's slow meta decomposition
            return torch.empty_like(x)
        if self.groups > 1 and self.training:
            return self._grouped(x)
        c = x.shape[1]
        factor = 0.0
        if self.training and self.track_running_stats:
            factor = self._cumulative_factor() if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        mean, var, weight, bias = self.running_mean, self.running_var, self.weight, self.bias
        if c != self.num_features:  # slices only below full width (see SlimConv2d)
            mean, var = (t[:c] if t is not None else None for t in (mean, var))
            weight, bias = (t[:c] if t is not None else None for t in (weight, bias))
        return F.batch_norm(x, mean, var, weight, bias, use_batch_stats, factor, self.eps)


class ConvBNAct(DerivedWeightsOwner):
    """Slimmable conv -> BN -> optional ReLU, the building brick of every op.

    At its full width in eval mode without autograd it runs as one conv with the BatchNorm folded in (weights
    derived once and kept until a parameter or statistic changes, :mod:`.inference`) and the ReLU, fused with it
    where the GPU can (:func:`.functional.conv2d_relu`): one or two ops where the plain path has a BN with its
    slicing and an out-of-place ReLU. A layer without ReLU that ends a residual block computes the block's sum and
    ReLU with ``add_relu``.

    Args:
        c_in: input channels at full width.
        c_out: output channels at full width; ``forward`` may ask for fewer.
        kernel_size: square kernel size (padding keeps the size at stride 1).
        stride: convolution stride.
        act: end with a ReLU; False for layers summed with a residual first.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = SlimConv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, bias=False)
        self.bn = SlimBatchNorm2d(c_out)
        self.act = act
        self._folded = DerivedWeights()
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def inference_weights(self) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """(weight, bias) of the one conv this layer computes in eval mode: the BatchNorm folded in (cached), or
        the conv's own after ``fold_batchnorm`` replaced the BN; None if the BN keeps no running statistics."""
        # read from the modules' own dicts: nn.Module attribute access would cost more than the whole check,
        # which runs for every layer on every pass
        conv, bn = self._modules["conv"], self._modules["bn"]
        w, b = conv._parameters["weight"], conv._parameters["bias"]
        if isinstance(bn, nn.Identity):
            return w, b
        if not isinstance(bn, nn.BatchNorm2d) or bn._buffers.get("running_mean") is None:
            return None
        mean, var = bn._buffers["running_mean"], bn._buffers["running_var"]
        gamma, beta = bn._parameters["weight"], bn._parameters["bias"]
        sources = [t for t in (w, b, mean, var, gamma, beta) if t is not None]
        return self._folded.get(sources, lambda: tuple(
            t.detach() for t in fuse_conv_bn_weights(w, b, mean, var, bn.eps, gamma, beta)))

    def runs_folded(self, x: torch.Tensor, out_channels: Optional[int] = None,
                    in_index: Optional[torch.Tensor] = None) -> bool:
        """Whether ``forward`` may take the folded path for these arguments: full width in and out, eval mode, no
        autograd, not traced, not on the meta device where only multiply-adds are counted (and, see
        ``inference_weights``, statistics to fold).

        Args:
            x: the input.
            out_channels: the output channels asked for (None: full width).
            in_index: input channels picked (None: the leading ones).
        """
        conv = self._modules["conv"]
        return (in_index is None and not x.is_meta and x.shape[1] == conv.in_channels
                and out_channels in (None, conv.out_channels) and inference_shortcuts(self))

    def forward(self, x: torch.Tensor, out_channels: Optional[int] = None,
                in_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        folded = self.inference_weights() if self.runs_folded(x, out_channels, in_index) else None
        if folded is not None:
            conv = self._modules["conv"]
            if self.act and folded[1] is not None:
                return conv2d_relu(x, *folded, conv.stride, conv.padding, conv.dilation)
            y = F.conv2d(x, *folded, conv.stride, conv.padding, conv.dilation)
            return y.relu_() if self.act else y
        y = self.bn(self.conv(x, out_channels, in_index))
        return F.relu(y) if self.act else y

    def add_relu(self, x: torch.Tensor, z: torch.Tensor, out_channels: Optional[int] = None) -> torch.Tensor:
        """``relu(self(x) + z)``: the sum and ReLU that end a residual block, with this layer (no ReLU of its own)
        as one branch; on the folded path one fused kernel where the GPU has it.

        Args:
            x: this layer's input.
            z: the other branch, of the output's shape.
            out_channels: the output channels asked for (None: full width).
        """
        if self.act:
            raise ValueError("ConvBNAct.add_relu: the layer must not end with its own ReLU (act=False)")
        folded = self.inference_weights() if self.runs_folded(x, out_channels) else None
        if folded is not None and folded[1] is not None:
            conv = self._modules["conv"]
            return conv2d_add_relu(x, *folded, z, conv.stride, conv.padding, conv.dilation)
        return self(x, out_channels).add_(z).relu_()


def half_size(size: Sequence[int]) -> tuple[int, int]:
    """Spatial size after one down-sampling (ceil, like a padded stride-2 3x3 conv).

    Args:
        size: (height, width).
    """
    return (size[0] + 1) // 2, (size[1] + 1) // 2


def bilinear_half(x: torch.Tensor) -> torch.Tensor:
    """Bilinear resize to ``half_size``. On even sizes bilinear halving (``align_corners=False``) samples the middle
    of each 2x2 block, which is 2x2 average pooling: the same numbers from a faster kernel. Exported and traced
    programs keep the general form, since they may run at other (odd) sizes than the one they were traced at.

    Args:
        x: a ``(N, C, H, W)`` map.
    """
    h, w = x.shape[-2:]
    if h % 2 == 0 and w % 2 == 0 and not (torch.compiler.is_exporting() or torch.jit.is_tracing()):
        return F.avg_pool2d(x, 2)
    return resize_bilinear(x, half_size((h, w)))


@torch.no_grad()
def copy_prefix_(dst: nn.Module, src: nn.Module) -> None:
    """Copy into ``dst`` the leading slice of each same-named tensor of ``src`` (weights and BN buffers).

    Args:
        dst: the narrower module (a child's), written in place.
        src: the full-width module (the supernet's) with the same structure.
    """
    src_state = src.state_dict()
    for name, t in dst.state_dict().items():
        if name not in src_state:
            raise KeyError(f"cannot inherit '{name}': the supernet module has no such tensor")
        s = src_state[name]
        if t.dim() == 0:
            t.copy_(s)
            continue
        if any(a > b for a, b in zip(t.shape, s.shape)) or t.dim() != s.dim():
            raise ValueError(f"cannot inherit '{name}': child shape {tuple(t.shape)} exceeds supernet {tuple(s.shape)}")
        t.copy_(s[tuple(slice(0, n) for n in t.shape)])
