"""The deploy path in one line: ``optimize(net, "fp16-fold-cl-graph")`` returns the network as ``hyctas bench`` times
it under that variant (BatchNorm folded, channels-last, fp16/bf16, ``torch.compile``, CUDA graph), built by the same
code (:func:`hyctas_lightning.evaluation.bench.prepare`); ``optimize(net, "auto")`` tries every variant the device
offers and returns the fastest whose output still matches eager fp32 within the bench's tolerance.

The returned module takes fp32 NCHW images of the example's size (a CUDA graph is captured at that size) on the
example's device and returns the logits in the variant's dtype.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence

import torch
from torch import nn

from hyctas_lightning.evaluation.bench import (
    CPU_VARIANTS,
    GPU_VARIANTS,
    InferenceRunner,
    Variant,
    eager_output,
    prepare,
)
from hyctas_lightning.evaluation.latency import measure_latency

log = logging.getLogger(__name__)


@dataclass
class Trial:
    """How one variant did in :func:`optimize`'s ``auto`` selection.

    Args:
        variant: the variant's name.
        rel_err: relative error of its output against eager fp32 (None if it failed).
        median_ms: its median latency (None if it failed or was too inexact to time).
        accepted: whether its error is within the tolerance of its dtype.
        error: why it failed (a compiler or graph-capture error), or None.
    """

    variant: str
    rel_err: Optional[float] = None
    median_ms: Optional[float] = None
    accepted: bool = False
    error: Optional[str] = None


@dataclass
class Selection:
    """The report of ``optimize(net, "auto")``: every variant tried and the one chosen.

    Args:
        chosen: the fastest accepted variant.
        device: the device it was timed on.
        size: (height, width) of the example input.
        trials: every variant tried, in order.
    """

    chosen: str
    device: str
    size: Sequence[int]
    trials: List[Trial] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"chosen": self.chosen, "device": self.device, "size": list(self.size),
                "trials": [asdict(t) for t in self.trials]}

    def markdown(self) -> str:
        lines = [f"Chosen on {self.device} at {self.size[0]}x{self.size[1]}: {self.chosen}", "",
                 "| variant | median (ms) | rel. err | |", "|---|---:|---:|---|"]
        for t in self.trials:
            ms = f"{t.median_ms:.2f}" if t.median_ms is not None else "-"
            err = f"{t.rel_err:.1e}" if t.rel_err is not None else "-"
            note = t.error or ("chosen" if t.variant == self.chosen else "" if t.accepted else "over tolerance")
            lines.append(f"| {t.variant} | {ms} | {err} | {note} |")
        return "\n".join(lines)


def _example(net: nn.Module, example_input: Optional[torch.Tensor]) -> torch.Tensor:
    """The given example, or a random 1024x2048 image (the paper's size) on the GPU if there is one."""
    if example_input is not None:
        return example_input.float()
    in_chans = next((m.in_channels for m in net.modules() if isinstance(m, nn.Conv2d)), 3)
    return torch.randn(1, in_chans, 1024, 2048, device="cuda" if torch.cuda.is_available() else "cpu")


def optimize(net: nn.Module, variant: str = "auto", example_input: Optional[torch.Tensor] = None,
             candidates: Sequence[str] = (), warmup: int = 10, runs: int = 30) -> InferenceRunner:
    """``net`` ready for batch-1 inference under ``variant``, on the example's device (``net`` itself is untouched).

    ``variant="auto"`` prepares every candidate, checks its output against eager fp32 (:data:`TOLERANCE` of the
    bench, per dtype), times the accepted ones by the bench's protocol and returns the fastest; its report is the
    returned module's ``selection`` (:class:`Selection`) and is logged.

    Args:
        net: an image-to-logits network.
        variant: a ``hyctas bench`` variant (``fp32-fold``, ``fp16-fold-cl-graph``, ...) or ``auto``.
        example_input: an fp32 ``(1, C, H, W)`` image of the size to run, on the device to run on; None: a random
            1024x2048 image on the GPU if there is one, else on the CPU.
        candidates: the variants ``auto`` tries; empty: ``hyctas bench``'s defaults for the device.
        warmup: untimed passes before timing a candidate (``auto``).
        runs: timed passes per candidate; the median counts (``auto``).
    """
    example = _example(net, example_input)
    reference = eager_output(copy.deepcopy(net), example)
    if variant != "auto":
        runner, error = prepare(net, Variant.parse(variant), example, reference)
        log.info("optimize: %s, relative error %.1e against eager fp32", variant, error)
        return runner
    cuda = example.device.type == "cuda"
    names = list(candidates) or list(GPU_VARIANTS if cuda else CPU_VARIANTS)
    device = torch.cuda.get_device_name(example.device) if cuda else "cpu"
    best: Optional[InferenceRunner] = None
    selection = Selection("", device, tuple(example.shape[-2:]))
    for name in names:
        chosen = Variant.parse(name)
        trial = Trial(chosen.name)
        selection.trials.append(trial)
        try:
            runner, trial.rel_err = prepare(net, chosen, example, reference)
            trial.accepted = trial.rel_err <= chosen.tolerance
            if trial.accepted:
                trial.median_ms = measure_latency(runner, example.shape[-2:], example.device.type, warmup,
                                                  runs).median_ms
        except RuntimeError as e:  # this variant does not run here (compiler, graph capture, memory)
            trial.error = str(e).splitlines()[0]
            continue
        fastest = min((t.median_ms for t in selection.trials if t.median_ms is not None and t is not trial),
                      default=None)
        if trial.median_ms is not None and (fastest is None or trial.median_ms < fastest):
            best, selection.chosen = runner, trial.variant
    if best is None:
        raise RuntimeError("optimize(auto): no variant ran within tolerance on this device:\n" + selection.markdown())
    best.selection = selection
    log.info("optimize(auto):\n%s", selection.markdown())
    return best
