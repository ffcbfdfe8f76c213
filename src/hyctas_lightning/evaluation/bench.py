"""``hyctas bench``: batch-1 latency by the paper's protocol, plain and along the optimised inference path.

Each network is timed under several *variants*, written ``DTYPE[-fold][-cl][-compile][-graph]``:
``fp32``/``fp16``/``bf16`` weights and input, ``fold`` BatchNorm folded into the convs, ``cl`` channels-last
memory format, ``compile`` torch.compile, ``graph`` the forward captured once as a CUDA graph and replayed.
``fp32`` alone is the eager network the paper times. Each variant's output is compared with it (``rel. err``),
so a faster path that computes something else shows up; ``TOLERANCE`` is the error a variant of each dtype may
show and still count as the same network. Timings include casting the fp32 input.

With ``repeat`` K the whole comparison runs K times in one process, each repeat timing every variant of every
network in turn (network A, B, C, A, B, C, ...), so that a slow phase of the host hits all networks alike; speed-ups
are taken per repeat and reported as their median and range.
"""
from __future__ import annotations

import copy
import logging
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from hyctas_lightning.fileio import atomic_write_text, write_json
from hyctas_lightning.layers import derived_tensors

from .folding import fold_batchnorm
from .latency import Latency, cudnn_autotune, measure_latency
from .profile import count_macs, count_params

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FLAGS = ("fold", "cl", "compile", "graph")
GPU_VARIANTS = ("fp32", "fp32-fold", "fp16-fold-cl", "bf16-fold-cl", "fp16-fold-cl-graph", "fp16-fold-cl-compile-graph")
CPU_VARIANTS = ("fp32", "fp32-fold", "fp32-fold-cl", "bf16-fold-cl")
PEERS = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")
# Relative error a variant may show against eager fp32 and still compute the same network: fp32 allows for the
# TF32 convolutions GPUs run by default (seen: ~6e-4), the half-precision types for their rounding (seen: fp16
# ~1e-3, bf16 ~1e-2).
TOLERANCE = {"fp32": 2e-3, "fp16": 1e-2, "bf16": 5e-2}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """One way of running a network for inference (see the module doc for the spelling).

    Args:
        dtype: ``fp32``, ``fp16`` or ``bf16`` weights and input.
        fold: fold BatchNorm into the preceding convolutions.
        channels_last: run in channels-last memory format (faster tensor-core convolutions on GPUs).
        compile: wrap the network in ``torch.compile``.
        cuda_graph: capture the forward once as a CUDA graph and replay it (GPU only; removes launch overhead).
    """

    dtype: str = "fp32"
    fold: bool = False
    channels_last: bool = False
    compile: bool = False
    cuda_graph: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        dtype, *flags = text.split("-")
        unknown = [f for f in flags if f not in FLAGS]
        if dtype not in DTYPES or unknown or len(set(flags)) != len(flags):
            raise ValueError(f"variant '{text}': write DTYPE[-fold][-cl][-compile][-graph] with DTYPE one of "
                             f"{', '.join(DTYPES)} (e.g. fp16-fold-cl-graph)")
        return cls(dtype, "fold" in flags, "cl" in flags, "compile" in flags, "graph" in flags)

    @property
    def name(self) -> str:
        flags = [f for f, on in zip(FLAGS, (self.fold, self.channels_last, self.compile, self.cuda_graph)) if on]
        return "-".join([self.dtype, *flags])

    @property
    def tolerance(self) -> float:
        """The largest relative error against eager fp32 that still counts as the same network."""
        return TOLERANCE[self.dtype]


class InferenceRunner(nn.Module):
    """Runs a network under a variant on fp32 NCHW input: casts the input, then either calls the network or
    replays its CUDA graph (captured on a static input buffer after a few warm-up passes).

    Args:
        net: the network, already cast, folded and compiled as ``variant`` says.
        variant: how to run it.
        example: an fp32 input of the timed size, used to capture the CUDA graph.
    """

    def __init__(self, net: nn.Module, variant: Variant, example: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.dtype = DTYPES[variant.dtype]
        self.memory_format = torch.channels_last if variant.channels_last else torch.contiguous_format
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        if variant.cuda_graph:
            self._capture(example)

    def _cast(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(dtype=self.dtype, memory_format=self.memory_format)

    @torch.no_grad()
    def _capture(self, example: torch.Tensor) -> None:
        self.static_input = self._cast(example).clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up off the default stream (compilation, cuDNN autotuning)
            for _ in range(3):
                self.net(self.static_input)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_output = self.net(self.static_input)
        self.graph_reads = derived_tensors(self.net)  # eval()/to() on the runner drop the caches the graph reads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            return self.net(self._cast(x))
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_output


def prepare_network(net: nn.Module, variant: Variant, device: torch.device | str, inplace: bool = False) -> nn.Module:
    """``net`` folded, cast, laid out and wrapped for ``torch.compile`` as ``variant`` says, on ``device``: the part
    of :func:`optimise` that only queues untimed work (a search does it for the next candidate while the GPU scores
    the current one); ``net`` is untouched unless ``inplace``.

    Args:
        net: the network.
        variant: how to run it.
        device: the timing device.
        inplace: prepare ``net`` itself (folded, cast, moved) instead of a copy, for a network that is thrown away
            after (a search's candidate): the deep copy is most of the host time of preparing it.
    """
    model = (net if inplace else copy.deepcopy(net)).eval()
    if variant.fold:
        fold_batchnorm(model)
    model = model.to(device=device, dtype=DTYPES[variant.dtype])
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if variant.compile:
        torch.compiler.reset()  # a fresh cache per network: guards on shared forward code would pile up
        model = torch.compile(model)
    return model


def optimise(net: nn.Module, variant: Variant, example: torch.Tensor, autotune: bool = True,
             prepared: bool = False) -> InferenceRunner:
    """A copy of ``net`` prepared for inference under ``variant`` on ``example``'s device (``net`` is untouched),
    its CUDA graph captured with cuDNN autotuning on unless ``autotune`` is False (see :func:`cudnn_autotune`).

    Args:
        net: the network.
        variant: how to run it.
        example: an fp32 input of the timed size on the timing device.
        autotune: cuDNN autotuning while the graph is captured.
        prepared: ``net`` comes from :func:`prepare_network` under ``variant`` already: only the runner is made.
    """
    if variant.cuda_graph and example.device.type != "cuda":
        raise ValueError(f"variant '{variant.name}': CUDA graphs need a GPU (--device cuda)")
    model = net if prepared else prepare_network(net, variant, example.device)
    with cudnn_autotune(autotune):
        return InferenceRunner(model, variant, example)


def prepare(net: nn.Module, variant: Variant, example: torch.Tensor,
            reference: torch.Tensor) -> Tuple[InferenceRunner, float]:
    """``net`` prepared under ``variant`` (:func:`optimise`) and the relative error of its output on ``example``
    against ``reference``, the eager fp32 output: what the bench times and what the deploy path returns.

    Args:
        net: the network (untouched).
        variant: how to run it.
        example: an fp32 input of the timed size on the timing device.
        reference: the eager fp32 network's output on ``example``.
    """
    runner = optimise(net, variant, example)
    with torch.no_grad():
        return runner, relative_error(runner(example), reference)


@dataclass
class BenchRow:
    """One timed (network, variant) pair.

    Args:
        network: the network's name.
        role: ``network`` (one of the user's) or ``peer`` (a reference it is compared with).
        variant: the variant's name (``fp16-fold-cl``).
        params_m: parameters in millions.
        macs_g: multiply-accumulates of one image, in billions.
        latency: the measured latency (of the median repeat when there are several).
        rel_err: relative error of the variant's output against the eager fp32 network.
        repeats_ms: median latency of each repeat, in the order they ran (empty: one repeat, ``latency``).
    """

    network: str
    role: str  # "network" or "peer"
    variant: str
    params_m: float
    macs_g: float
    latency: Latency
    rel_err: float
    repeats_ms: List[float] = field(default_factory=list)

    @property
    def per_repeat_ms(self) -> List[float]:
        return self.repeats_ms or [self.latency.median_ms]

    @property
    def within_tolerance(self) -> bool:
        return self.rel_err <= Variant.parse(self.variant).tolerance

    def to_dict(self) -> dict:
        row = {k: v for k, v in asdict(self).items() if k != "latency"}
        return {**row, **{k: v for k, v in self.latency.to_dict().items() if k.endswith("_ms") or k == "fps"},
                "within_tolerance": self.within_tolerance}


@dataclass
class BenchReport:
    """All rows of one ``hyctas bench`` run, with the settings they were timed under.

    Args:
        size: (height, width) in pixels of the timed image.
        backend: ``cuda`` (CUDA events) or ``cpu`` (wall clock).
        device: the device's name.
        warmup: untimed passes before timing.
        runs: timed passes; the median is reported.
        rows: the timed pairs.
        failures: ``{network, variant, error}`` of pairs that could not run.
        repeat: how many times the whole comparison ran, interleaved.
    """

    size: Tuple[int, int]
    backend: str
    device: str
    warmup: int
    runs: int
    rows: List[BenchRow] = field(default_factory=list)
    failures: List[dict] = field(default_factory=list)
    repeat: int = 1

    def speedups(self) -> List[dict]:
        """Peer latency / network latency for every (network, peer) pair timed under the same variant: per repeat
        (``per_repeat``), their median (``ratio``) and range (``min``, ``max``)."""
        by_key = {(r.network, r.variant): r for r in self.rows}
        found = []
        for n in self.rows:
            for p in self.rows:
                if n.role == "network" and p.role == "peer" and by_key.get((p.network, n.variant)) is p:
                    per = [a / b for a, b in zip(p.per_repeat_ms, n.per_repeat_ms)]
                    found.append({"network": n.network, "peer": p.network, "variant": n.variant,
                                  "ratio": statistics.median(per), "min": min(per), "max": max(per),
                                  "per_repeat": per})
        return found

    def timing_note(self) -> str:
        h, w = self.size
        how = (f"CUDA events on {self.device}" if self.backend == "cuda"
               else "wall clock on the CPU (no GPU here; not the paper's GPU protocol)")
        repeats = (f"; {self.repeat} interleaved repeats of the whole comparison, the median repeat shown"
                   if self.repeat > 1 else "")
        return (f"batch 1 at {h}x{w}, {how}; median of {self.runs} passes after {self.warmup} warm-up passes"
                f"{repeats}; FPS = 1 / latency")

    def markdown(self) -> str:
        repeats = self.repeat > 1
        lines = [f"Timing: {self.timing_note()}.", "",
                 "| network | params (M) | mult-adds (G) | variant | median (ms) | p10 (ms) | p90 (ms) | FPS "
                 "| rel. err |" + (" repeats (ms) |" if repeats else ""),
                 "|---|---:|---:|---|---:|---:|---:|---:|---:|" + ("---|" if repeats else "")]
        lines += [f"| {r.network} | {r.params_m:.2f} | {r.macs_g:.1f} | {r.variant} | {r.latency.median_ms:.2f} | "
                  f"{r.latency.p10_ms:.2f} | {r.latency.p90_ms:.2f} | {r.latency.fps:.1f} | {r.rel_err:.1e}"
                  f"{'' if r.within_tolerance else ' (over tolerance)'} |"
                  + (" " + " ".join(f"{m:.2f}" for m in r.per_repeat_ms) + " |" if repeats else "")
                  for r in self.rows]
        ratios = self.speedups()
        if ratios:
            spread = ", median and range over the repeats" if repeats else ""
            peers = list(dict.fromkeys(r["peer"] for r in ratios))
            lines += ["", f"Speed-up over the peers (peer latency / network latency, same variant{spread}):", "",
                      "| network | variant | " + " | ".join(f"vs {p}" for p in peers) + " |",
                      "|---|---|" + "---:|" * len(peers)]
            table: Dict[Tuple[str, str], List[str]] = {}
            for r in ratios:
                cell = f"{r['ratio']:.2f}x" + (f" ({r['min']:.2f}-{r['max']:.2f})" if repeats else "")
                table.setdefault((r["network"], r["variant"]), []).append(cell)
            lines += [f"| {n} | {v} | " + " | ".join(cells) + " |" for (n, v), cells in table.items()]
        if self.failures:
            lines += ["", "Failed (not timed):", ""] + [f"- {f['network']} {f['variant']}: {f['error']}"
                                                       for f in self.failures]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"size": list(self.size), "backend": self.backend, "device": self.device, "warmup": self.warmup,
                "runs": self.runs, "repeat": self.repeat, "rows": [r.to_dict() for r in self.rows],
                "speedups": self.speedups(), "failures": self.failures}

    def comparison(self, command: str, reference: Optional[str]) -> dict:
        """The comparison as a results file keeps it: per network and variant the median latency of each repeat,
        and the median speed-up over ``reference`` (a peer's name; None: no speed-ups) with its range.

        Args:
            command: the command line that measured it.
            reference: the peer the speed-ups are taken over (LRASPP-MobileNetV3-Large in the project's tables).
        """
        rows = [{"network": r.network, "role": r.role, "variant": r.variant, "params_m": r.params_m,
                 "macs_g": r.macs_g, "median_ms": r.latency.median_ms, "repeats_ms": r.per_repeat_ms,
                 "fps": r.latency.fps, "rel_err": r.rel_err, "within_tolerance": r.within_tolerance}
                for r in self.rows]
        over = [s for s in self.speedups() if s["peer"] == reference]
        speedups: Dict[str, Dict[str, float]] = {}
        ranges: Dict[str, Dict[str, List[float]]] = {}
        for s in over:
            speedups.setdefault(s["network"], {})[s["variant"]] = s["ratio"]
            ranges.setdefault(s["network"], {})[s["variant"]] = [s["min"], s["max"]]
        return {"gpu": self.device if self.backend == "cuda" else None, "device": self.device, "command": command,
                "size": list(self.size), "warmup": self.warmup, "runs": self.runs, "repeat": self.repeat,
                "reference": reference, "rows": rows, "speedups": speedups, "speedup_ranges": ranges,
                "failures": self.failures}

    def write(self, out_dir: Path) -> Tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        md, js = out_dir / "bench.md", out_dir / "bench.json"
        atomic_write_text(md, self.markdown() + "\n")
        write_json(js, self.to_dict())
        return md, js


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def bench(networks: Dict[str, nn.Module], size: Sequence[int] = (1024, 2048), variants: Sequence[str] = (),
          peers: Optional[Dict[str, nn.Module]] = None, device: str = "auto", warmup: int = 50,
          runs: int = 100, repeat: int = 1) -> BenchReport:
    """Time every network (and peer) under every variant, ``repeat`` times over, interleaved (see the module doc);
    default variants depend on the device. Each network is prepared once per variant and kept for the repeats."""
    backend = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if backend not in ("cuda", "cpu"):
        raise ValueError(f"--device: auto, cuda or cpu, got '{device}'")
    if repeat < 1:
        raise ValueError(f"--repeat: at least 1, got {repeat}")
    chosen = [Variant.parse(v) for v in (variants or (GPU_VARIANTS if backend == "cuda" else CPU_VARIANTS))]
    h, w = int(size[0]), int(size[1])
    example = torch.randn(1, 3, h, w, device=backend)
    report = BenchReport((h, w), backend, torch.cuda.get_device_name() if backend == "cuda" else "cpu", warmup, runs,
                         repeat=repeat)
    entries = [(role, name, net) for role, group in (("network", networks), ("peer", peers or {}))
               for name, net in group.items()]
    prepared: Dict[Tuple[str, str], InferenceRunner] = {}
    errors: Dict[Tuple[str, str], float] = {}
    timed: Dict[Tuple[str, str], List[Latency]] = {}
    for r in range(repeat):
        references: Dict[str, torch.Tensor] = {}  # eager fp32 outputs, needed while the first repeat prepares
        for variant in chosen:
            for _, name, net in entries:
                key = (name, variant.name)
                if r > 0 and key not in timed:
                    continue  # failed before
                try:
                    if key not in prepared:
                        if name not in references:
                            references[name] = eager_output(net, example)
                        prepared[key], errors[key] = prepare(net, variant, example, references[name])
                    latency = measure_latency(prepared[key], (h, w), backend, warmup, runs)
                except RuntimeError as e:  # a compiler or graph-capture failure, or out of memory: time the rest
                    prepared.pop(key, None)
                    timed.pop(key, None)
                    report.failures.append({"network": name, "variant": variant.name, "error": str(e).splitlines()[0]})
                    log.info("  %-32s %-28s failed: %s", name, variant.name, report.failures[-1]["error"])
                    continue
                timed.setdefault(key, []).append(latency)
                log.info("  %-32s %-28s %9.2f ms  %8.1f FPS%s", name, variant.name, latency.median_ms, latency.fps,
                         f"  (repeat {r + 1}/{repeat})" if repeat > 1 else "")
                if r == repeat - 1:
                    del prepared[key]  # its last repeat is timed: free its memory
    for role, name, net in entries:
        params, macs = count_params(net) / 1e6, count_macs(net, (h, w)) / 1e9
        for variant in chosen:
            latencies = timed.get((name, variant.name))
            if latencies:
                report.rows.append(BenchRow(name, role, variant.name, params, macs, _median_repeat(latencies),
                                            errors[(name, variant.name)], [t.median_ms for t in latencies]))
        net.to("cpu")
    return report


def eager_output(net: nn.Module, example: torch.Tensor) -> torch.Tensor:
    """The eager fp32 network's output on ``example``, what every variant is checked against (the network is put
    in eval mode and moved to the example's device).

    Args:
        net: the network.
        example: an fp32 input.
    """
    with torch.no_grad():
        return net.eval().to(example.device)(example)


def _median_repeat(latencies: List[Latency]) -> Latency:
    """The repeat whose median is the median of the repeats (the lower middle one for an even count)."""
    middle = statistics.median_low(t.median_ms for t in latencies)
    return next(t for t in latencies if t.median_ms == middle)
