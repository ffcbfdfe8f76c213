"""``hyctas export``: the deployable network (BatchNorm folded, no auxiliary heads) as ONNX, TorchScript or a
torch.export program, each checked against the PyTorch network it came from.

The format follows the file suffix: ``.onnx`` (torch.onnx's dynamo exporter, verified with onnxruntime),
``.pt``/``.ts`` (TorchScript by tracing; deprecated in recent PyTorch, kept for existing C++/mobile runtimes),
``.pt2`` (``torch.export``, TorchScript's successor). Input ``image`` float32 (N, 3, H, W) normalised as in
training; output ``logits`` (N, classes, H, W).
"""
from __future__ import annotations

import copy
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from hyctas_lightning.evaluation.bench import relative_error
from hyctas_lightning.evaluation.folding import fold_batchnorm

FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".pt2": "torch.export"}


@dataclass(frozen=True)
class ExportResult:
    """What ``export_network`` wrote and how faithful it is.

    Args:
        path: the written file.
        format: ``onnx``, ``torchscript`` or ``torch.export`` (from the file's suffix).
        folded: BatchNorm layers folded into their convolutions.
        rel_err: relative error of the file's output, run by its runtime, against the PyTorch network.
    """

    path: Path
    format: str
    folded: int
    rel_err: float


def _dynamic_shapes(dynamic: bool) -> Optional[Tuple[Dict[int, Any]]]:
    """Height and width of the one positional input free, over whatever range the network's own shape arithmetic
    allows (``Dim.AUTO``: strided branches and resizes bound the smallest size). The batch stays 1, the deployment
    setting: tracing specialises an example size of 1, so a free batch would exclude batch 1 from the program."""
    if not dynamic:
        return None
    return ({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO},)


def _require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"ONNX export needs {', '.join(missing)}: pip install 'hyctas-lightning[export]' "
                         "(or export TorchScript/torch.export with --out X.pt / X.pt2)")


def _write(model: nn.Module, path: Path, fmt: str, example: torch.Tensor, dynamic: bool,
           opset: Optional[int]) -> None:
    if fmt == "onnx":
        torch.onnx.export(model, (example,), str(path), input_names=["image"], output_names=["logits"],
                          dynamo=True, external_data=False, opset_version=opset,
                          dynamic_shapes=_dynamic_shapes(dynamic), verbose=False)
    elif fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation notice and shape-trace warnings; checked below
            torch.jit.save(torch.jit.trace(model, example), str(path))
    else:
        torch.export.save(torch.export.export(model, (example,), dynamic_shapes=_dynamic_shapes(dynamic)), str(path))


def _run_exported(path: Path, fmt: str, x: torch.Tensor) -> torch.Tensor:
    """Run the written file with its own runtime."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path))(x)
    return torch.export.load(str(path)).module()(x)


@torch.no_grad()
def export_network(net: nn.Module, path: str | Path, size: Sequence[int] = (1024, 2048), dynamic: bool = False,
                   opset: Optional[int] = None, tolerance: float = 1e-4) -> ExportResult:
    """Fold BN into a copy of ``net``, write it to ``path`` and check that the file, run by its runtime, matches
    ``net`` within ``tolerance`` relative error on a random image of ``size`` (raises if not).

    Args:
        net: the network (left untouched; a copy is folded and exported on the CPU).
        path: output file; its suffix picks the format (``.onnx``, ``.pt``/``.ts`` TorchScript, ``.pt2``
            torch.export).
        size: (height, width) of the example image in pixels; the export is specialised to it unless
            ``dynamic``.
        dynamic: allow other batch sizes and image sizes at run time.
        opset: ONNX opset (None: the exporter's default).
        tolerance: largest relative error accepted between the file and ``net``.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix)
    if fmt is None:
        raise ValueError(f"--out {path}: unknown format; use one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        _require_onnx()
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(net).cpu().eval()
    example = torch.randn(1, 3, int(size[0]), int(size[1]))
    reference = model(example)
    folded = fold_batchnorm(model)
    _write(model, path, fmt, example, dynamic, opset)
    error = relative_error(_run_exported(path, fmt, example), reference)
    if not error <= tolerance:
        raise RuntimeError(f"{path}: the exported network differs from PyTorch by {error:.2e} (relative), above "
                           f"{tolerance:.0e}")
    return ExportResult(path, fmt, folded, error)
