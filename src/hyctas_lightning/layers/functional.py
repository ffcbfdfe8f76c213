"""Functional forms shared by every network here, written so the GPU takes its fast kernels.

- ``resize_bilinear``: PyTorch's bilinear kernel for contiguous (NCHW) CUDA tensors gives each thread one output
  pixel and loops over batch and channels, so a map with many channels and few pixels (a cell's up-sampling, the
  logits brought to the input size) runs far below memory speed; its channels-last kernel spreads every element.
  NCHW CUDA maps are therefore resized channels-last and handed back NCHW: the same numbers, two cheap copies.
  On the meta device, where multiply-adds are counted, only the output's shape is made.
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
    nchw_cuda = x.is_cuda and x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous()
    if not nchw_cuda or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    y = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=size, mode="bilinear",
                      align_corners=False)
    return y.contiguous()


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
