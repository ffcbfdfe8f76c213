"""Batch-1 latency by the paper's protocol: warm-up, then the median of many timed passes.

On a GPU each pass is timed with CUDA events and cuDNN autotuning is on unless asked off; on a CPU the wall clock is
used (and the result says so through ``backend``)."""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class Latency:
    """Batch-1 latency of one network and how it was measured.

    Args:
        median_ms: median time of a pass in milliseconds (the paper's number).
        p10_ms: 10th percentile in milliseconds.
        p90_ms: 90th percentile in milliseconds.
        backend: ``cuda`` (CUDA events) or ``cpu`` (wall clock).
        device: the device's name.
        size: (height, width) in pixels of the input.
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    backend: str
    device: str
    size: tuple[int, int]

    @property
    def fps(self) -> float:
        return 1000.0 / self.median_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "fps": self.fps}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def cudnn_autotune(on: bool = True) -> Iterator[None]:
    """cuDNN autotuning (``torch.backends.cudnn.benchmark``) set to ``on`` inside the block, restored after it.
    Autotuning times every convolution algorithm once per new shape: the fastest kernels for a network timed many
    times, a second or two of overhead for one that is timed once."""
    tuned = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = tuned


@torch.no_grad()
def measure_latency(model: nn.Module, size: Sequence[int] = (1024, 2048), backend: str = "cuda", warmup: int = 50,
                    runs: int = 100, in_chans: int = 3, autotune: bool = True) -> Latency:
    """Latency of ``model`` on one ``size`` image. ``backend``: ``cuda`` (CUDA events) or ``cpu`` (wall clock).

    Args:
        model: the network (put in eval mode and moved to the backend's device).
        size: (height, width) in pixels; the paper times 1024 x 2048.
        backend: ``cuda`` or ``cpu``.
        warmup: untimed passes first (cuDNN autotuning, caches).
        runs: timed passes; more gives a steadier median.
        in_chans: channels of the random input.
        autotune: cuDNN autotuning while timing (see :func:`cudnn_autotune`).
    """
    if backend not in ("cuda", "cpu"):
        raise ValueError(f"latency backend: 'cuda' or 'cpu', got '{backend}'")
    if backend == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("latency backend 'cuda' needs a GPU; use backend 'cpu' on this machine")
    device = torch.device(backend)
    model = model.eval().to(device)
    x = torch.randn(1, in_chans, *size, device=device)
    with cudnn_autotune(autotune):
        for _ in range(warmup):
            model(x)
        times = [_time_cuda(model, x) if backend == "cuda" else _time_cpu(model, x) for _ in range(runs)]
    name = torch.cuda.get_device_name(device) if backend == "cuda" else "cpu"
    return Latency(statistics.median(times), _quantile(times, 0.1), _quantile(times, 0.9), backend, name,
                   (int(size[0]), int(size[1])))


def _time_cuda(model: nn.Module, x: torch.Tensor) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    model(x)
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def _time_cpu(model: nn.Module, x: torch.Tensor) -> float:
    t = time.perf_counter()
    model(x)
    return (time.perf_counter() - t) * 1e3
