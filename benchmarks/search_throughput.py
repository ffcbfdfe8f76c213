"""Search cost: per candidate of the supernet evaluator, the median seconds of each part (profiling, building the
ChildNet, latency, BN recalibration, validation) and of the whole evaluation, timed as wall clock around it, with
Cityscapes-like settings by default: latency at 1024x2048 (batch 1, 50 warm-up + 100 timed passes), recalibration on
1000 training images and mIoU on 500 validation images (Cityscapes' val size), both at 256x512.

The candidates are drawn first and announced to the evaluator together, as the search announces a generation, so
with ``--profile_workers`` N their profiles are counted ahead in N worker processes: the profile row then shows
what a candidate still waits for its profile (the counting itself is off the critical path), and the total is the
wall time per candidate. ``--profile_workers 0`` counts them inline, one candidate after another. On a GPU each
candidate's ChildNet is built (and folded and cast) while the GPU scores the candidate before it
(``search.build_ahead``; ``--no-build_ahead`` builds each in its own evaluation, ``--build_ahead`` forces it on a
CPU): the build row is then the host time of building that no GPU work covered, and the row below it the part that
the GPU's work hid (not in the wall time).

    python benchmarks/search_throughput.py --evals 8
    # configs/camvid/search.yaml's measurement (11 classes, latency at 360x480, fp16 CUDA graph, 1 + 10 replays)
    python benchmarks/search_throughput.py --evals 20 --classes 11 --latency_size 360 480 --calibration 352 \\
        --val 101 --size 360 480 --variant fp16-fold-cl-graph --warmup 1 --runs 10 --no-autotune
    # the host parts (profile, build) on a CPU, the rest shrunk to a few images and one eager pass
    python benchmarks/search_throughput.py --device cpu --evals 20 --classes 11 --latency_size 360 480 \\
        --calibration 2 --val 2 --batch 2 --size 64 96 --warmup 0 --runs 1
    # does timing a child without its weights move the medians? (both timed per candidate, alternately)
    python benchmarks/search_throughput.py --evals 20 --classes 11 --latency_size 360 480 --calibration 16 \
        --val 16 --size 360 480 --variant fp16-fold-cl-graph --warmup 1 --runs 10 --no-autotune --weight_check
    # fewer calibration images: a trained supernet and its data, the same candidates scored with each count
    python benchmarks/search_throughput.py --ckpt runs/camvid/supernet/checkpoints/last.ckpt --evals 20 \\
        --calibration 352 --val 101 --latency_size 360 480 --variant fp16-fold-cl-graph --warmup 1 --runs 10 \\
        --no-autotune --calibration_counts 192 128 64

Without ``--ckpt`` the supernet has the paper's space (16 layers, Fch 12, 19 classes) with random weights and the
images are random tensors: the cost of an evaluation depends on the architecture and the sizes, not on the values
(mIoUs, and hence the ``--calibration_counts`` score differences, mean nothing then). With ``--ckpt`` the supernet
and the images are the checkpoint's and its data module's, drawn as ``hyctas search`` draws them (a count N takes
the first N of the calibration images, as a search with ``calibration_images: N`` would). The candidates are drawn
from ``--seed``, so two runs (two versions of the code, two devices) time the same ones.
"""
from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import time
from typing import List, Sequence, Tuple

import torch

from hyctas_lightning.evaluation.weight_sharing import SubnetScorer
from hyctas_lightning.models import ChildNet, SuperNet
from hyctas_lightning.ranking.correlation import kendall_tau
from hyctas_lightning.search import SearchConfig
from hyctas_lightning.search.evaluator import SupernetEvaluator
from hyctas_lightning.search_space import Architecture, SearchSpace

PARTS = ("profile", "build", "latency", "recalibration", "validation")
HIDDEN = "build_hidden"  # host time of a build spent while the GPU scored the candidate before: no part of the wall


def batches(count: int, batch: int, size: tuple[int, int], classes: int, masks: bool) -> list:
    out = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        images = torch.randn(n, 3, *size)
        out.append((images, torch.randint(0, classes, (n, *size))) if masks else images)
    return out


def first_images(images: Sequence[torch.Tensor], count: int) -> List[torch.Tensor]:
    """The first ``count`` images of a list of batches, in batches (the last one cut)."""
    out, left = [], count
    for x in images:
        if left <= 0:
            break
        out.append(x[:left])
        left -= x.shape[0]
    return out


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def inputs(args: argparse.Namespace) -> Tuple[SuperNet, list, list]:
    """The supernet and the calibration and validation batches: a checkpoint's and its data's, or random ones."""
    if args.ckpt:
        from hyctas_lightning.data import build_datamodule
        from hyctas_lightning.models import load_supernet
        from hyctas_lightning.search.evaluator import collect_images

        supernet, meta = load_supernet(args.ckpt)
        data = build_datamodule(meta["data"])
        return (supernet, collect_images(data, "train", args.calibration, args.seed, with_masks=False),
                collect_images(data, "val", args.val, args.seed, with_masks=True))
    supernet = SuperNet(SearchSpace(layers=args.layers, fch=args.fch), args.classes)
    size = tuple(args.size)
    return (supernet, batches(args.calibration, args.batch, size, args.classes, False),
            batches(args.val, args.batch, size, args.classes, True))


def time_candidates(evaluator: SupernetEvaluator, archs: Sequence[Architecture]) -> Tuple[dict, list, float, list]:
    """Per part the seconds of each candidate, each candidate's wall time, the wall clock of all, and their mIoUs."""
    evaluator.prefetch(archs)  # the batch announced, as the search announces a generation
    times: dict[str, list[float]] = {part: [] for part in (*PARTS, HIDDEN)}
    walls, mious = [], []
    start = time.perf_counter()
    for arch in archs:
        began = time.perf_counter()
        measurement = evaluator(arch)
        sync()
        walls.append(time.perf_counter() - began)
        mious.append(measurement.values["miou"])
        for part, seconds in measurement.timing.items():
            times[part].append(seconds)
    return times, walls, time.perf_counter() - start, mious


def calibration_study(evaluator: SupernetEvaluator, archs: Sequence[Architecture], counts: Sequence[int]) -> list:
    """For each count N (the full set first): the candidates' mIoUs recalibrated on the first N calibration images
    and the seconds of each recalibration."""
    rows = []
    full = sum(x.shape[0] for x in evaluator.calibration)
    for count in [full, *sorted((n for n in counts if n != full), reverse=True)]:
        scorer = SubnetScorer(evaluator.supernet, first_images(evaluator.calibration, count),
                              evaluator.scorer.num_classes, evaluator.scorer.ignore_index,
                              evaluator.config.images_per_pass)
        seconds, mious = [], []
        for arch in archs:
            start = time.perf_counter()
            scorer.calibrate(arch)
            sync()
            seconds.append(time.perf_counter() - start)
            mious.append(scorer.miou(arch, evaluator.validation))
        rows.append({"images": count, "seconds": seconds, "miou": mious})
    return rows


def weight_check(evaluator: SupernetEvaluator, archs: Sequence[Architecture]) -> List[float]:
    """Per candidate, latency with placeholder constants / latency with the supernet's weights, timed alternately
    under the search's protocol: how far timing a child without its weights moves the medians."""
    c = evaluator.config
    ratios = []
    for arch in archs:
        children = (ChildNet.from_supernet(evaluator.supernet, arch, weights=w) for w in (False, True))
        bare, filled = (evaluator.latency(evaluator.prepare(child), c.latency_warmup, c.latency_runs)
                        for child in children)
        ratios.append(bare / filled)
    return ratios


def print_study(rows: list) -> None:
    full = rows[0]
    print(f"\ncalibration images: the same {len(full['miou'])} candidates, mIoU against the full "
          f"{full['images']} images (differences in mIoU points: mIoU x 100)")
    print("| calibration images | median recalibration seconds | mean abs. difference | max abs. difference "
          "| Kendall tau vs full |\n|---|---|---|---|---|")
    for row in rows:
        gaps = [100 * abs(a - b) for a, b in zip(row["miou"], full["miou"])]
        print(f"| {row['images']} | {statistics.median(row['seconds']):.3f} | {statistics.mean(gaps):.3f} | "
              f"{max(gaps):.3f} | {kendall_tau(row['miou'], full['miou']):.3f} |")


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
    parser.add_argument("--profile_workers", type=int, default=2,
                        help="processes counting profiles ahead (search.profile_workers; 0: inline)")
    parser.add_argument("--build_ahead", action=argparse.BooleanOptionalAction, default=None,
                        help="build each candidate's ChildNet while the one before is scored (search.build_ahead; "
                             "default: on a GPU)")
    parser.add_argument("--ckpt", help="a supernet checkpoint: its weights, and images of its data module")
    parser.add_argument("--weight_check", action="store_true",
                        help="also time each candidate with placeholder constants and with the supernet's weights")
    parser.add_argument("--calibration_counts", nargs="+", type=int, default=[],
                        help="also score the candidates recalibrated on the first N calibration images, per N")
    args = parser.parse_args()
    if any(not 0 < n <= args.calibration for n in args.calibration_counts):
        parser.error(f"--calibration_counts: each in 1..{args.calibration} (--calibration), got "
                     f"{args.calibration_counts}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    config = SearchConfig(calibration_images=args.calibration, val_images=args.val, latency_backend=device,
                          latency_size=tuple(args.latency_size), latency_variant=args.variant,
                          latency_warmup=args.warmup, latency_runs=args.runs, latency_autotune=args.autotune,
                          profile_workers=args.profile_workers, build_ahead=args.build_ahead)
    supernet, calibration, validation = inputs(args)
    evaluator = SupernetEvaluator(supernet, calibration, validation, config, device=device)
    rng = random.Random(args.seed)
    archs = [supernet.space.sample(rng) for _ in range(args.evals + 1)]
    try:
        start = time.perf_counter()
        evaluator.prefetch(archs[:1])
        evaluator(archs[0])  # warm-up: kernels, allocator, the profile workers' start
        warm_up = time.perf_counter() - start
        times, walls, wall, mious = time_candidates(evaluator, archs[1:])
        study = calibration_study(evaluator, archs[1:], args.calibration_counts) if args.calibration_counts else []
        ratios = weight_check(evaluator, archs[1:]) if args.weight_check else []
    finally:
        evaluator.close()
    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads (wall clock)"
    images = sum(x.shape[0] for x in calibration), sum(x.shape[0] for x, _ in validation)
    size = "x".join(map(str, calibration[0].shape[-2:]))
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"device: {name}; torch {torch.__version__}; {args.evals} evaluations; recalibration {images[0]} and "
          f"validation {images[1]} images at {size}, latency at {args.latency_size[0]}x{args.latency_size[1]} "
          f"({args.variant}, {args.warmup} + {args.runs} passes); profiles "
          + (f"counted ahead by {args.profile_workers} worker process{'es' if args.profile_workers > 1 else ''}"
             if args.profile_workers else "inline")
          + "; each ChildNet built " + ("ahead, while the candidate before is scored" if evaluator.build_ahead
                                       else "in its own evaluation"))
    print("| part | median seconds per evaluation | share of the wall clock |\n|---|---|---|")
    for part in PARTS:
        seconds = times[part]
        median = f"{statistics.median(seconds):.3f}" if seconds else "not run (over the latency cap)"
        ahead = " (the wait for a profile counted ahead)" if part == "profile" and args.profile_workers else ""
        ahead += " (host time no device work covered)" if part == "build" and evaluator.build_ahead else ""
        print(f"| {part}{ahead} | {median} | {100 * sum(seconds) / wall:.1f}% |")
        if part == "build" and times[HIDDEN]:
            print(f"| build hidden behind the previous candidate's scoring (of {len(times[HIDDEN])} built ahead; "
                  f"not in the wall time) | {statistics.median(times[HIDDEN]):.3f} | - |")
    print(f"| **total** (wall time per candidate) | {statistics.median(walls):.3f} | "
          f"{100 * sum(walls) / wall:.1f}% |")
    print(f"evaluations per minute: {60 * args.evals / wall:.2f}; warm-up evaluation {warm_up:.2f} s")
    if ratios:
        print(f"\nlatency with placeholder constants / with the supernet's weights, per candidate: median "
              f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f} (the search times "
              f"{'placeholders' if device == 'cuda' else 'the weights'} on this backend)")
    if study:
        print_study(study)
        drift = max(abs(a - b) for a, b in zip(study[0]["miou"], mious))
        print(f"the full set again against the evaluations above: max abs. mIoU difference {drift:.2g}")


if __name__ == "__main__":
    main()
