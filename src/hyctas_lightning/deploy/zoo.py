"""Compact checkpoints for a model zoo: the network's weights only, in fp16, or with int8 convolution weights
(symmetric, one scale per output channel) when fp16 would not fit the size budget. They stay ordinary retrain
checkpoints: ``hyctas test/predict --ckpt_path``, ``hyctas bench/export --ckpt`` read them directly, because
loading expands them back to float32 first (``expand_state_dict``)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, Union

import lightning
import torch

SCALE = ".__int8_scale"


def _int8(weight: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-output-channel symmetric int8: ``weight ~ q * scale``."""
    flat = weight.float().flatten(1)
    scale = (flat.abs().amax(1) / 127).clamp_min(1e-12)
    q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8).view_as(weight)
    return {"q": q, "scale": scale.half()}


def compact_state_dict(state: Dict[str, torch.Tensor], int8: bool) -> Dict[str, torch.Tensor]:
    """Floating tensors to fp16; with ``int8``, weights of 2 or more dimensions to int8 plus a scale entry."""
    out: Dict[str, torch.Tensor] = {}
    for key, t in state.items():
        if not t.is_floating_point():
            out[key] = t
        elif int8 and t.dim() >= 2:
            packed = _int8(t)
            out[key], out[key + SCALE] = packed["q"], packed["scale"]
        else:
            out[key] = t.half()
    return out


def expand_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The float32 state dict of a compact one (a plain state dict passes through with floats as float32)."""
    out = {}
    for key, t in state.items():
        if key.endswith(SCALE):
            continue
        scale = state.get(key + SCALE)
        if scale is not None:
            out[key] = t.float() * scale.float().view(-1, *([1] * (t.dim() - 1)))
        else:
            out[key] = t.float() if t.is_floating_point() else t
    return out


def _size(checkpoint: Dict[str, Any]) -> int:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.tell()


def save_compact(checkpoint: Union[str, Path, Dict[str, Any]], path: Union[str, Path],
                 max_mib: float = 8.0) -> Dict[str, Any]:
    """Write ``checkpoint``'s network (``net.*`` weights and its ``hyctas`` metadata) as a compact retrain
    checkpoint under ``max_mib``: fp16 if it fits, else int8 convolution weights. Returns what it wrote."""
    if not isinstance(checkpoint, dict):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=False)
    from hyctas_lightning.training.segmentation import checkpoint_meta

    meta = checkpoint_meta(checkpoint, "the checkpoint to compact")
    net = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    for int8 in (False, True):
        compact = {"state_dict": compact_state_dict(net, int8), "hyctas": {**meta, "weights": "int8" if int8 else "fp16"},
                   "pytorch-lightning_version": lightning.__version__}
        if _size(compact) <= max_mib * 2**20:
            torch.save(compact, path)
            return compact
    raise ValueError(f"{path}: the network does not fit {max_mib} MiB even with int8 weights; raise max_mib")
