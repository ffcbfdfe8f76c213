"""Where the time of one inference pass goes: per network, size and ``hyctas bench`` variant, the ops and kernels
of a batch-1 forward, the host (CPU) time against the device time, and the ops that cost the most of each, from
``torch.profiler``.

    python benchmarks/inference_profile.py --out runs/profile/inference.json
    python benchmarks/inference_profile.py --networks hyctas_s --sizes 1024x2048 --variants fp32 fp16-fold-cl-graph

Networks are preset or registered names (``hyctas_s``, ``lraspp_mobilenet_v3_large``), architecture files or retrain
checkpoints (``model_zoo/camvid/searched_camvid.ckpt``). Each variant is built by the bench's own code, so what is
profiled is what ``hyctas bench`` times and ``hyctas_lightning.deploy.optimize`` returns.

Per forward: ``host_ms``, the time until the call returns (without the profiler; on a GPU the kernels are queued
asynchronously, so this is the Python and launch cost), ``wall_ms`` with the device synchronised, ``device_ms``
the kernels' own time (GPU only); a pass whose host time exceeds its device time is launch-bound. ``aten_ops``
counts the operators called from Python, ``launches`` the kernel (or CUDA-graph) launches and ``kernels`` the
kernels and memory copies that ran (GPU only); ``profiled_cpu_ms`` is the host time under the profiler (inflated
by its own overhead, but split by op in the tables). On a CPU the same tables come with the CPU's times (use a
small ``--sizes`` there).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from hyctas_lightning.evaluation.bench import Variant, eager_output, prepare
from hyctas_lightning.fileio import write_json
from hyctas_lightning.models import create_network, list_networks, load_network

NETWORKS = ("hyctas_s", "hyctas_m", "model_zoo/camvid/searched_camvid.ckpt", "lraspp_mobilenet_v3_large")
SIZES = ("1024x2048", "360x480")
PASS = "inference_pass"  # the record_function around each profiled forward


def load(source: str, num_classes: int) -> nn.Module:
    """A network from a registered name, an architecture file or a retrain checkpoint."""
    if source.endswith(".ckpt"):
        return load_network(source)[0]
    if source in list_networks() or source.endswith(".json"):
        return create_network(source, num_classes)
    raise ValueError(f"--networks: '{source}' is neither a registered network ({', '.join(list_networks('hyctas_*'))}"
                     ", ...), an architecture .json nor a retrain .ckpt")


def parse_size(text: str) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}': write HxW, e.g. 1024x2048") from None
    return h, w


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_passes(model: nn.Module, x: torch.Tensor, iters: int) -> Tuple[float, float]:
    """(host ms, wall ms) per forward, medians over ``iters`` passes, without the profiler."""
    host, wall = [], []
    for _ in range(iters):
        _sync(x.device)
        start = time.perf_counter()
        model(x)
        returned = time.perf_counter()
        _sync(x.device)
        host.append((returned - start) * 1e3)
        wall.append((time.perf_counter() - start) * 1e3)
    return statistics.median(host), statistics.median(wall)


def _is_launch(name: str) -> bool:
    return "LaunchKernel" in name or "GraphLaunch" in name


def summarise(prof: profile, iters: int, top: int) -> dict:
    """Counts and times per forward, and the ``top`` ops by CPU and by device time, from a profile of ``iters``
    passes each inside a ``PASS`` record."""
    events = [e for e in prof.events() if e.name != PASS]
    aten = [e for e in events if e.name.startswith("aten::")
            and not (e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::"))]
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]
    per_op: Dict[str, Dict[str, float]] = defaultdict(lambda: {"calls": 0, "cpu_ms": 0.0, "device_ms": 0.0})
    for avg in prof.key_averages():
        if avg.key == PASS:
            continue
        entry = per_op[avg.key]
        entry["calls"] += avg.count / iters
        entry["cpu_ms"] += avg.self_cpu_time_total / 1e3 / iters
        entry["device_ms"] += avg.self_device_time_total / 1e3 / iters
    rows = [{"op": name, **values} for name, values in per_op.items()]
    device_ms = sum(e.self_device_time_total for e in prof.key_averages() if e.key != PASS) / 1e3 / iters
    return {"aten_ops": len(aten) / iters,
            "launches": sum(_is_launch(e.name) for e in events) / iters if kernels else None,
            "kernels": len(kernels) / iters if kernels else None,
            "profiled_cpu_ms": statistics.median(e.cpu_time_total / 1e3 for e in prof.events()
                                                 if e.name == PASS and e.device_type == DeviceType.CPU),
            "device_ms": device_ms if kernels else None,
            "top_cpu": sorted(rows, key=lambda r: -r["cpu_ms"])[:top],
            "top_device": sorted((r for r in rows if r["device_ms"] > 0), key=lambda r: -r["device_ms"])[:top]}


def profile_one(net: nn.Module, variant: Variant, size: Tuple[int, int], device: torch.device, warmup: int,
                iters: int, top: int) -> dict:
    """Profile ``net`` under ``variant`` at ``size``: see the module doc for what is measured."""
    example = torch.randn(1, 3, *size, device=device)
    runner, error = prepare(net, variant, example, eager_output(net, example))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.no_grad():
        for _ in range(warmup):
            runner(example)
        host_ms, wall_ms = time_passes(runner, example, iters)
        _sync(device)
        with profile(activities=activities) as prof:
            for _ in range(iters):
                with record_function(PASS):
                    runner(example)
            _sync(device)
    return {"size": list(size), "variant": variant.name, "rel_err": error, "host_ms": host_ms, "wall_ms": wall_ms,
            **summarise(prof, iters, top)}


def _num(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(results: List[dict]) -> str:
    """The summary table, then per profiled pass its top ops by CPU and by device time."""
    lines = ["| network | size | variant | aten ops | launches | kernels | host ms | device ms | wall ms |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['network']} | {r['size'][0]}x{r['size'][1]} | {r['variant']} | {r['aten_ops']:.0f} | "
              f"{_num(r['launches'], 0)} | {_num(r['kernels'], 0)} | {r['host_ms']:.2f} | {_num(r['device_ms'])} | "
              f"{r['wall_ms']:.2f} |" for r in results]
    for r in results:
        lines += ["", f"{r['network']} {r['size'][0]}x{r['size'][1]} {r['variant']}: top ops per forward", "",
                  "| by CPU time | calls | CPU ms | | by device time | calls | device ms |",
                  "|---|---:|---:|---|---|---:|---:|"]
        for i in range(max(len(r["top_cpu"]), len(r["top_device"]))):
            cpu = r["top_cpu"][i] if i < len(r["top_cpu"]) else None
            dev = r["top_device"][i] if i < len(r["top_device"]) else None
            left = f"{cpu['op']} | {cpu['calls']:.0f} | {cpu['cpu_ms']:.3f}" if cpu else " | | "
            right = f"{dev['op'][:60]} | {dev['calls']:.0f} | {dev['device_ms']:.3f}" if dev else " | | "
            lines.append(f"| {left} | | {right} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[parse_size(s) for s in SIZES],
                        metavar="HxW")
    parser.add_argument("--variants", nargs="+", default=["fp32"], help="hyctas bench variants (default fp32)")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--warmup", type=int, default=10, help="untimed passes first")
    parser.add_argument("--iters", type=int, default=20, help="timed and profiled passes")
    parser.add_argument("--top", type=int, default=12, help="ops listed per table")
    parser.add_argument("--num_classes", type=int, default=19, help="classes of networks built by name or file")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args(argv)
    backend = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    device = torch.device(backend)
    variants = [Variant.parse(v) for v in args.variants]
    if args.out and Path(args.out).is_dir():
        parser.error(f"--out {args.out} is a folder: give a JSON file name")
    results = []
    for source in args.networks:
        net = load(source, args.num_classes)
        for size in args.sizes:
            for variant in variants:
                print(f"{source} {size[0]}x{size[1]} {variant.name}", file=sys.stderr, flush=True)
                results.append({"network": source, **profile_one(net, variant, size, device, args.warmup,
                                                                 args.iters, args.top)})
        net.to("cpu")
    print(markdown(results))
    if args.out:
        name = torch.cuda.get_device_name(device) if backend == "cuda" else "cpu"
        write_json(Path(args.out), {"device": name, "torch": torch.__version__, "warmup": args.warmup,
                                    "iters": args.iters, "results": results})
        print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
