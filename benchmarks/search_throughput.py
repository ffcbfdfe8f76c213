"""Search cost: evaluations per minute of the supernet evaluator and, per part (profiling, building the
ChildNet, latency, BN recalibration, validation), the median seconds per candidate and the share of the wall
clock, with Cityscapes-like settings by default: latency at 1024x2048 (batch 1, 50 warm-up + 100 timed passes),
recalibration on 1000 training images and mIoU on 500 validation images (Cityscapes' val size), both at 256x512.

    python benchmarks/search_throughput.py --evals 8
    # configs/camvid/search.yaml's measurement (11 classes, latency at 360x480, fp16 CUDA graph, 1 + 10 replays)
    python benchmarks/search_throughput.py --evals 20 --classes 11 --latency_size 360 480 --calibration 352 \
        --val 101 --size 360 480 --variant fp16-fold-cl-graph --warmup 1 --runs 10 --no-autotune
    # the host parts (profile, build) on a CPU, the rest shrunk to a few images and one eager pass
    python benchmarks/search_throughput.py --device cpu --evals 20 --classes 11 --latency_size 360 480 \
        --calibration 2 --val 2 --batch 2 --size 64 96 --warmup 0 --runs 1

The supernet has the paper's space (16 layers, Fch 12, 19 classes) with random weights and the images are
random tensors: the cost of an evaluation depends on the architecture and the sizes, not on the values. The
candidates are drawn from ``--seed``, so two runs (two versions of the code, two devices) time the same ones.
"""
from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import time

import torch

from hyctas_lightning.models import SuperNet
from hyctas_lightning.search import SearchConfig
from hyctas_lightning.search.evaluator import SupernetEvaluator
from hyctas_lightning.search_space import SearchSpace

PARTS = ("profile", "build", "latency", "recalibration", "validation")


def batches(count: int, batch: int, size: tuple[int, int], classes: int, masks: bool) -> list:
    out = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        images = torch.randn(n, 3, *size)
        out.append((images, torch.randint(0, classes, (n, *size))) if masks else images)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evals", type=int, default=8, help="random architectures evaluated (after one warm-up)")
    parser.add_argument("--calibration", type=int, default=1000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--size", nargs=2, type=int, default=[256, 512], help="recalibration/validation size")
    parser.add_argument("--latency_size", nargs=2, type=int, default=[1024, 2048])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--fch", type=int, default=12)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--variant", default="fp32", help="latency variant (hyctas bench's spelling)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed latency passes per candidate")
    parser.add_argument("--runs", type=int, default=100, help="timed latency passes per candidate")
    parser.add_argument("--no-autotune", dest="autotune", action="store_false", help="latency without cuDNN autotuning")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    config = SearchConfig(calibration_images=args.calibration, val_images=args.val, latency_backend=device,
                          latency_size=tuple(args.latency_size), latency_variant=args.variant,
                          latency_warmup=args.warmup, latency_runs=args.runs, latency_autotune=args.autotune)
    supernet = SuperNet(SearchSpace(layers=args.layers, fch=args.fch), args.classes)
    size = tuple(args.size)
    evaluator = SupernetEvaluator(supernet, batches(args.calibration, args.batch, size, args.classes, False),
                                  batches(args.val, args.batch, size, args.classes, True), config, device=device)
    rng = random.Random(args.seed)
    evaluator(supernet.space.sample(rng))  # warm-up: kernels, allocator
    times: dict[str, list[float]] = {part: [] for part in PARTS}
    totals = []
    start = time.perf_counter()
    for _ in range(args.evals):
        timing = evaluator(supernet.space.sample(rng)).timing
        for part, seconds in timing.items():
            times[part].append(seconds)
        totals.append(sum(timing.values()))
    wall = time.perf_counter() - start
    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads (wall clock)"
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"device: {name}; torch {torch.__version__}; {args.evals} evaluations; recalibration {args.calibration} "
          f"and validation {args.val} images at {size[0]}x{size[1]}, latency at "
          f"{args.latency_size[0]}x{args.latency_size[1]} ({args.variant}, {args.warmup} + {args.runs} passes)")
    print("| part | median seconds per evaluation | share of the wall clock |\n|---|---|---|")
    for part in PARTS:
        seconds = times[part]
        median = f"{statistics.median(seconds):.3f}" if seconds else "not run (over the latency cap)"
        print(f"| {part} | {median} | {100 * sum(seconds) / wall:.1f}% |")
    print(f"| **total** | {statistics.median(totals):.3f} | {100 * sum(totals) / wall:.1f}% timed |")
    print(f"evaluations per minute: {60 * args.evals / wall:.2f}")


if __name__ == "__main__":
    main()
