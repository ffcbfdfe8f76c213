"""Cost of one supernet training step (sandwich: largest + smallest + N random sub-networks, one optimiser
step) against one training step of the largest sub-network as a standalone ChildNet.

    python benchmarks/supernet_step.py --size 256 512 --batch 16 --fch 12 --layers 16

Times with CUDA events on a GPU (wall clock on CPU), after warm-up; prints the median per step.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from hyctas_lightning.models import ChildNet, SuperNet
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training import SandwichSampler, segmentation_loss


def timed(step: Callable[[int], None], warmup: int, steps: int, device: torch.device) -> list[float]:
    """Milliseconds per call of ``step(i)``."""
    for i in range(warmup):
        step(i)
    times = []
    for i in range(warmup, warmup + steps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(i)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            step(i)
            times.append((time.perf_counter() - t) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", nargs=2, type=int, default=[256, 512])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--fch", type=int, default=12)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--num_random", type=int, default=2)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    space = SearchSpace(layers=args.layers, fch=args.fch)
    images = torch.randn(args.batch, 3, *args.size, device=device)
    target = torch.randint(0, args.classes, (args.batch, *args.size), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    supernet = SuperNet(space, args.classes).to(device)
    sampler = SandwichSampler(space, args.num_random)
    opt = torch.optim.SGD(supernet.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)

    def supernet_step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        for _, arch in sampler.sample(i):
            with autocast:
                loss = segmentation_loss(supernet(images, arch), target)
            loss.backward()
        opt.step()

    child = ChildNet(space.largest(), args.classes).to(device)
    child_opt = torch.optim.SGD(child.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)

    def child_step(i: int) -> None:
        child_opt.zero_grad(set_to_none=True)
        with autocast:
            loss = segmentation_loss(child(images), target)
        loss.backward()
        child_opt.step()

    rows = []
    # cuDNN autotuning pays off for the child's fixed shapes; the supernet's shapes change every step
    for name, step, params, tune in (("supernet step (sandwich)", supernet_step, supernet, False),
                                     ("largest ChildNet step", child_step, child, True)):
        torch.backends.cudnn.benchmark = tune
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        ms = statistics.median(timed(step, args.warmup, args.steps, device))
        mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        rows.append((name, ms, args.batch / ms * 1e3, sum(p.numel() for p in params.parameters()) / 1e6, mem))
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (wall clock)"
    print(f"\n{gpu}, torch {torch.__version__}, batch {args.batch}, {args.size[0]}x{args.size[1]}, "
          f"fch {args.fch}, {args.layers} layers, {args.num_random} random, {'bf16' if args.bf16 else 'fp32'}")
    print(f"{'what':<26} {'ms/step':>9} {'img/s':>8} {'params M':>9} {'peak GiB':>9}")
    for name, ms, ips, p, mem in rows:
        print(f"{name:<26} {ms:>9.1f} {ips:>8.1f} {p:>9.1f} {mem:>9.1f}")
    print(f"ratio supernet / largest child: {rows[0][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
