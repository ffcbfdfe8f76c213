"""Where a supernet training step goes, kernel by kernel: per step the kernels launched, the host time against the
device time, and the ops that cost the most, for training variants (memory format, fused optimiser, bf16) of the
CamVid supernet on random data of the training size, plus the scores of a few sub-networks recalibrated and
validated channels-last and NCHW (the search's choice on GPUs must not move them).

    python benchmarks/supernet_profile.py --variants fp32 fp32-fused-cl bf16-fused-cl --out runs/profile/supernet.json

A variant is ``DTYPE[-fused][-cl]``: ``fp32`` or ``bf16`` (autocast), ``fused`` SGD (momentum buffers made up front,
``training.optim.prime_momentum``) instead of the multi-tensor one, ``cl`` the supernet channels-last. ``host_ms`` is
the time the Python loop takes per step, ``ms_per_step`` the wall time with the device synchronised at the end: a
step whose host time reaches its wall time is launch-bound. Times come from the device present (CPU: use a small
``--size``, ``--batch`` and ``--layers``).

Per phase (forward with the loss, backward, optimiser) each row also gives the median host time and the aten ops
the host dispatched in one step, counted below autograd by a ``TorchDispatchMode`` (views, which launch nothing,
apart), with the step's most frequent ops. Every dispatched op costs host time whatever the tensor size, so on a
CPU at a tiny size the counts and host times show what a launch-bound GPU step costs:

    python benchmarks/supernet_profile.py --size 64 96 --batch 2 --variants fp32 fp32-cl --threads 1
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import random
import statistics
import time
from typing import Any, Dict, List

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from hyctas_lightning.evaluation.weight_sharing import SubnetScorer
from hyctas_lightning.fileio import write_json
from hyctas_lightning.models import SuperNet
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training import segmentation_loss
from hyctas_lightning.training.optim import prime_momentum
from hyctas_lightning.training.sampling import build_sampler


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PHASES = ("forward", "backward", "optimizer")


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while it is entered, by name, and the views among them apart."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter = collections.Counter()
        self.views = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.is_view:
            self.views += 1
        else:
            self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def train_step(net: SuperNet, sampler, optimizer, images, target, bf16: bool):
    """One optimiser step over the sampler's sub-networks; returns a function of the step index (and optionally
    a context per phase, e.g. an ``OpCounter``) that returns the passes run and the host seconds per phase."""
    def step(i: int, contexts: Dict[str, Any] | None = None) -> tuple[int, Dict[str, float]]:
        seconds = dict.fromkeys(PHASES, 0.0)

        def timed(phase, fn):
            t = time.perf_counter()
            with contexts[phase] if contexts else contextlib.nullcontext():
                out = fn()
            seconds[phase] += time.perf_counter() - t
            return out

        optimizer.zero_grad(set_to_none=True)
        draws = sampler.sample(i)
        for _, arch in draws:
            with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = timed("forward", lambda a=arch: segmentation_loss(net(images, a), target))
            timed("backward", loss.backward)
        timed("optimizer", optimizer.step)
        return len(draws), seconds
    return step


def count_ops(step, i: int) -> Dict[str, Any]:
    """The aten ops of step ``i`` per phase (``ops``, ``views``) and the step's 25 most frequent ops."""
    counters = {phase: OpCounter() for phase in PHASES}
    step(i, counters)
    total = sum((c.ops for c in counters.values()), collections.Counter())
    return {"per_phase": {p: {"ops": sum(c.ops.values()), "views": c.views} for p, c in counters.items()},
            "top": total.most_common(25)}


def time_variant(net: SuperNet, sampling: str, variant: str, args, device) -> Dict[str, float]:
    dtype, *flags = variant.split("-")
    net.set_channels_last("cl" in flags)
    images = torch.randn(args.batch, 3, *args.size, device=device)
    target = torch.randint(0, args.classes, (args.batch, *args.size), device=device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4,
                                fused=True if "fused" in flags else None)
    prime_momentum(optimizer)
    options = {"num_random": args.num_random} if sampling == "sandwich" else {}
    step = train_step(net, build_sampler(sampling, net.space, **options), optimizer, images, target, dtype == "bf16")
    for i in range(args.warmup):
        step(i)
    sync(device)
    phases, passes, start = [], 0, time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        n, seconds = step(i)
        passes += n
        phases.append(seconds)
    sync(device)
    wall = (time.perf_counter() - start) / args.steps
    ops = count_ops(step, args.warmup + args.steps)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step(10_000)
        sync(device)
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    top = prof.key_averages().table(sort_by="self_device_time_total" if kernels else "self_cpu_time_total",
                                    row_limit=12, max_name_column_width=48)
    print(f"\n== {sampling} {variant}\n{top}")
    print(f"top ops of a step: {ops['top']}")
    return {"ms_per_step": 1e3 * wall, "host_ms": 1e3 * statistics.median(sum(p.values()) for p in phases),
            "host_ms_per_phase": {k: 1e3 * statistics.median(p[k] for p in phases) for k in PHASES},
            "ops_per_step": ops["per_phase"], "top_ops": ops["top"],
            "images_per_s": args.batch / wall,
            "passes_per_s": passes * args.batch / args.steps / wall,  # images x sub-networks
            "kernels_per_step": len(kernels), "device_ms": sum(e.device_time for e in kernels) / 1e3,
            "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0}


def phase_cells(row: Dict[str, Any], phase: str) -> str:
    """A row's host ms and ``ops (+views)`` of one phase, aligned under the table's header."""
    ops = row["ops_per_step"][phase]
    count = f"{ops['ops']} (+{ops['views']})"
    return f"{row['host_ms_per_phase'][phase]:>12.1f} {count:>20}"


def layout_scores(net: SuperNet, args, device) -> List[List[float]]:
    """mIoU of three sub-networks recalibrated and validated channels-last, then NCHW, on the same random batches."""
    calibration = [torch.randn(args.batch, 3, *args.size, device=device) for _ in range(2)]
    validation = [(torch.randn(args.batch, 3, *args.size, device=device),
                   torch.randint(0, args.classes, (args.batch, *args.size), device=device))]
    out = []
    for seed in range(3):
        arch = net.space.sample(random.Random(100 + seed))
        scores = []
        for channels_last in (True, False):
            net.set_channels_last(channels_last)
            scorer = SubnetScorer(net, calibration, args.classes)
            scores.append(scorer(arch, scorer.passes(validation)))
        out.append(scores)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["fp32", "fp32-fused-cl", "bf16-fused-cl"])
    parser.add_argument("--samplings", nargs="+", default=["sandwich", "single"])
    parser.add_argument("--size", nargs=2, type=int, default=[352, 480])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--fch", type=int, default=12)
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--num_random", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (steadier CPU timings with 1)")
    parser.add_argument("--out", default=None, help="JSON file of the results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = SuperNet(SearchSpace(layers=args.layers, fch=args.fch, stem_head_width=0.6667), args.classes).to(device)
    rows = {f"{s}/{v}": time_variant(net, s, v, args, device) for s in args.samplings for v in args.variants}
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "size": args.size, "batch": args.batch, "train": rows,
              "scores_channels_last_vs_nchw": layout_scores(net.eval(), args, device)}
    print(f"\n{result['device']}, torch {result['torch']}, batch {args.batch} at {args.size[0]}x{args.size[1]}")
    print(f"{'sampling/variant':<24} {'ms/step':>8} {'host ms':>8} {'img/s':>7} {'passes/s':>8} {'kernels':>8}")
    for name, r in rows.items():
        print(f"{name:<24} {r['ms_per_step']:>8.1f} {r['host_ms']:>8.1f} {r['images_per_s']:>7.1f} "
              f"{r['passes_per_s']:>8.1f} {r['kernels_per_step']:>8}")
    print("\nhost ms (median) and aten ops (+ views) per step, by phase")
    print(f"{'sampling/variant':<24} " + " ".join(f"{p + ' ms':>12} {p + ' ops':>20}" for p in PHASES) + f" {'ops':>7}")
    for name, r in rows.items():
        print(f"{name:<24} " + " ".join(phase_cells(r, p) for p in PHASES)
              + f" {sum(o['ops'] for o in r['ops_per_step'].values()):>7}")
    print("scores channels-last vs NCHW:", result["scores_channels_last_vs_nchw"])
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
