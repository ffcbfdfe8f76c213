"""The checkpoint format, in one place: the kinds of checkpoint this package writes, their metadata, safe
reading with errors that say what to do, atomic writing and the compact model-zoo weights.

Every checkpoint carries a ``hyctas`` entry whose ``kind`` says what it holds:

- ``hyctas-supernet`` (``SupernetModule``): the search space, the data module's class path and arguments, the
  class count and the sampler settings, so ``hyctas search --ckpt`` needs no other file;
- ``hyctas-segmentation`` (``SegmentationModule``): how to rebuild the network (architecture or registered
  name and its size settings), its display name, class names, palette and ignore index;
- ``hyctas-panoptic`` (``PanopticModule``): the same, plus the panoptic head, thing classes and post-processing.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain containers only, so opening a
file never runs code from it. Metadata is therefore kept to plain data (``plain``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import re
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from hyctas_lightning.fileio import atomic_open

SUPERNET_KIND = "hyctas-supernet"
SEGMENTATION_KIND = "hyctas-segmentation"
PANOPTIC_KIND = "hyctas-panoptic"
KINDS = {SUPERNET_KIND: "a supernet checkpoint", SEGMENTATION_KIND: "a retrained network's checkpoint",
         PANOPTIC_KIND: "a panoptic network's checkpoint"}
WHAT_TO_DO = {
    SUPERNET_KIND: "search a supernet with `hyctas search --ckpt`, or retrain one of its architectures with "
                   "`hyctas fit --config configs/retrain/...`",
    SEGMENTATION_KIND: "test, predict, bench or export it; train a supernet with `hyctas fit --config "
                       "configs/supernet.yaml`",
    PANOPTIC_KIND: "test or predict it with `hyctas test/predict --config configs/panoptic/...`",
}
SCALE = ".__int8_scale"
PathLike = Union[str, Path]


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or of the wrong kind; the message says which file and what to do."""


def plain(value: Any) -> Any:
    """``value`` as plain data (dicts, lists, strings, numbers): dataclasses and tuples become dicts and lists, so
    the metadata loads with ``weights_only=True``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def supernet_metadata(space: Dict[str, Any], data: Optional[Dict[str, Any]], num_classes: int,
                      sampler: Dict[str, Any]) -> Dict[str, Any]:
    """The ``hyctas`` entry of a supernet checkpoint."""
    return plain({"kind": SUPERNET_KIND, "space": space, "data": data, "num_classes": num_classes,
                  "sampler": sampler})


def network_metadata(network: Dict[str, Any], name: str, classes: Optional[list], palette: Optional[list],
                     ignore_index: int, kind: str = SEGMENTATION_KIND) -> Dict[str, Any]:
    """The ``hyctas`` entry of a retrain (or panoptic) checkpoint; ``network`` holds ``create_network``'s
    arguments."""
    return plain({"kind": kind, "network": network, "name": name, "classes": classes,
                  "palette": palette, "ignore_index": ignore_index})


def checkpoint_kind(checkpoint: Any) -> Optional[str]:
    meta = checkpoint.get("hyctas") if isinstance(checkpoint, dict) else None
    return meta.get("kind") if isinstance(meta, dict) else None


def require_kind(checkpoint: Any, kind: str, where: PathLike) -> Dict[str, Any]:
    """The ``hyctas`` metadata of ``checkpoint`` if it is of ``kind``, else a one-line error saying what it is."""
    found = checkpoint_kind(checkpoint)
    if found == kind:
        return checkpoint["hyctas"]
    if found in KINDS:
        raise CheckpointError(f"{where} is {KINDS[found]}, not {KINDS[kind]}; {WHAT_TO_DO[found]}")
    raise CheckpointError(f"{where} is not a hyctas checkpoint (no 'hyctas.kind'); this command needs {KINDS[kind]}")


def read_checkpoint(path: PathLike, kind: Optional[str] = None) -> Dict[str, Any]:
    """Load a checkpoint without running code from it (``weights_only=True``), checking its kind if given."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:  # a reference to a Python callable or class: what unpickling would have run
            raise CheckpointError(f"{path}: refused to open: it holds Python objects beyond tensors and plain data "
                                  f"({found.group(1)}; loading it could run code). Only open checkpoints written by "
                                  f"hyctas or a source you trust") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint, probably cut short or corrupt") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint, probably cut short or corrupt "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'empty file'})") from None
    if kind is not None:
        require_kind(checkpoint, kind, path)
    return checkpoint


def weights_digest(state: Dict[str, torch.Tensor]) -> str:
    """A 16-hex-digit identity of a state dict's tensors (names, dtypes, shapes and values): what a measurement made
    with these weights can be keyed by."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def atomic_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` through ``fileio.atomic_open``: a reader (or a kill) never sees half a file. A kill during the
    write can leave a ``.partial-*.tmp`` file behind; its name holds no part of ``path``'s, so Lightning's search for
    ``last`` checkpoints never picks it up."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


# ---------------------------------------------------------------------- compact model-zoo weights
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


def save_compact(checkpoint: Union[PathLike, Dict[str, Any]], path: PathLike,
                 max_mib: float = 8.0) -> Dict[str, Any]:
    """Write a retrain checkpoint's network (``net.*`` weights and its ``hyctas`` metadata) as a compact retrain
    checkpoint under ``max_mib``: fp16 if it fits, else int8 convolution weights. Returns what it wrote.

    The result stays an ordinary retrain checkpoint: loading expands it back to float32 first."""
    import lightning

    if not isinstance(checkpoint, dict):
        checkpoint = read_checkpoint(checkpoint)
    meta = require_kind(checkpoint, SEGMENTATION_KIND, "the checkpoint to compact")
    net = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    for int8 in (False, True):
        compact = {"state_dict": compact_state_dict(net, int8),
                   "hyctas": {**meta, "weights": "int8" if int8 else "fp16"},
                   "pytorch-lightning_version": lightning.__version__}
        if _size(compact) <= max_mib * 2**20:
            atomic_save(compact, path)
            return compact
    raise CheckpointError(f"{path}: the network does not fit {max_mib} MiB even with int8 weights; raise max_mib")
