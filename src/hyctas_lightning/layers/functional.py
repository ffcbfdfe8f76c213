"""Functional forms shared by every network here, written so the GPU takes its fast kernels.

- ``resize_bilinear``: PyTorch's bilinear kernel for contiguous (NCHW) CUDA tensors gives each thread one output
  pixel and loops over batch and channels, so a map with many channels and few pixels (a cell's up-sampling, the
  logits of a training batch) runs far below memory speed; its channels-last kernel spreads every element. NCHW
  CUDA maps are therefore resized channels-last and handed back NCHW: the same numbers, two cheap copies. Outside
  autograd an output of many pixels (``PIXEL_PARALLEL``, e.g. one image's logits at the input size) gives the NCHW
  kernel threads enough; there a channels-last input is made NCHW instead, so only the small side is copied. On the
  meta device, where multiply-adds are counted, only the output's shape is made.
- ``conv2d_relu`` and ``conv2d_add_relu``: a convolution with its bias, a residual sum and the ReLU after it in one
  cuDNN call for CUDA maps, where PyTorch runs three (the bias add, the sum, the ReLU), each a pass over memory
  and, at batch 1, a kernel launch the host must pay for (eager fp32 networks here are bound by launches: the
  fusion removes about a third of them); the plain ops elsewhere. Used on the inference path of layers whose
  BatchNorm is folded.
- ``attention``: ``scaled_dot_product_attention`` takes its fused kernels only when the per-head dimensions are
  multiples of 8 (16-bit) or 4 (fp32); slimmed cells ask for query/key heads of 2 or 6 channels, which fall back to
  the math path that materialises the (pixels x pixels) scores. On the GPU such heads get zero channels appended,
  which leave every dot product, and with the scale of the true dimension every result, unchanged (elsewhere,
  e.g. on the meta device where multiply-adds are counted, attention runs as written).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

HEAD_ALIGN = 8
# output pixels (batch x height x width) from which the NCHW bilinear kernel, one thread per pixel, fills the GPU
PIXEL_PARALLEL = 1 << 19
# dtypes whose convolution + bias (+ residual) + ReLU run as one cuDNN call
FUSED_CONV_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def resize_bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``x`` resized bilinearly (``align_corners=False``) to ``size``, or ``x`` itself when it has that size.

    Args:
        x: a ``(N, C, H, W)`` map.
        size: target (height, width).
    """
    size = tuple(size)  # kept as given: sizes traced symbolically (a dynamic export) must stay symbolic
    if tuple(x.shape[-2:]) == size:
        return x
    if x.is_meta:  # only the shape exists (multiply-adds are counted): skip PyTorch's slow decomposition
        return x.new_empty((*x.shape[:-2], *size))
    if not x.is_cuda or x.dim() != 4 or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return _bilinear(x, size)
    recorded = torch.is_grad_enabled() and x.requires_grad
    if not recorded and x.shape[0] * size[0] * size[1] >= PIXEL_PARALLEL:
        return _bilinear(x.contiguous(), size)
    if x.shape[1] == 1 or not x.is_contiguous():
        return _bilinear(x, size)
    return _bilinear(x.contiguous(memory_format=torch.channels_last), size).contiguous()


def _bilinear(x: torch.Tensor, size: tuple) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _fuses(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether cuDNN's fused kernels take this convolution: a GPU map and weights of its dtype (under autocast the
    weights stay fp32 and ``F.conv2d`` casts them; the fused ops do not)."""
    return x.is_cuda and x.dtype in FUSED_CONV_DTYPES and weight.dtype == x.dtype and torch.backends.cudnn.enabled


def conv2d_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: Sequence[int],
                padding: Sequence[int], dilation: Sequence[int]) -> torch.Tensor:
    """``relu(conv2d(x, weight) + bias)`` (no autograd: an inference shortcut).

    Args:
        x: the input map.
        weight: the convolution's weight.
        bias: its bias.
        stride: its stride.
        padding: its padding.
        dilation: its dilation.
    """
    if _fuses(x, weight):
        return torch.cudnn_convolution_relu(x, weight, bias, stride, padding, dilation, 1)
    return F.conv2d(x, weight, bias, stride, padding, dilation).relu_()


def conv2d_add_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, z: torch.Tensor,
                    stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]) -> torch.Tensor:
    """``relu(conv2d(x, weight) + bias + z)``, the residual sum that ends a block (no autograd: an inference
    shortcut).

    Args:
        x: the input map.
        weight: the convolution's weight.
        bias: its bias.
        z: the map added to the convolution's output (its shape; fused where it has the input's dtype and
            memory format).
        stride: its stride.
        padding: its padding.
        dilation: its dilation.
    """
    channels_last = torch.channels_last
    if (_fuses(x, weight) and z.dtype == x.dtype
            and z.is_contiguous(memory_format=channels_last) == x.is_contiguous(memory_format=channels_last)):
        return torch.cudnn_convolution_add_relu(x, weight, z, 1.0, bias, stride, padding, dilation, 1)
    return F.conv2d(x, weight, bias, stride, padding, dilation).add_(z).relu_()


def _pad_heads(t: torch.Tensor) -> torch.Tensor:
    extra = -t.shape[-1] % HEAD_ALIGN
    return F.pad(t, (0, extra)) if extra else t


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Exact dot-product attention of ``(..., tokens, dim)`` queries, keys and values, always on a fused kernel.

    Args:
        q: queries, ``(batch, heads, tokens, d_qk)``.
        k: keys, ``(batch, heads, tokens, d_qk)``.
        v: values, ``(batch, heads, tokens, d_v)``.
    """
    aligned = q.shape[-1] % HEAD_ALIGN == 0 and v.shape[-1] % HEAD_ALIGN == 0
    if aligned or not q.is_cuda or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return F.scaled_dot_product_attention(q, k, v)
    return padded_attention(q, k, v)


def padded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attention`` with every head padded with zero channels to a multiple of ``HEAD_ALIGN``.

    Args:
        q: queries, ``(batch, heads, tokens, d_qk)``.
        k: keys, ``(batch, heads, tokens, d_qk)``.
        v: values, ``(batch, heads, tokens, d_v)``.
    """
    out = F.scaled_dot_product_attention(_pad_heads(q), _pad_heads(k), _pad_heads(v), scale=1 / math.sqrt(q.shape[-1]))
    return out[..., : v.shape[-1]]
