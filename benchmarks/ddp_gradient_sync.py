"""How the gradients of a supernet training step (a sandwich of several sub-networks, one optimiser step) are
synchronised over processes, three ways, on the same data:

- ``per_member``: DDP with ``find_unused_parameters`` and every sub-network's backward synchronised (what Lightning's
  ``ddp_find_unused_parameters_true`` does with manual optimisation): one all-reduce of every bucket per sub-network;
- ``last_member``: the same DDP, ``no_sync`` for all but the last sub-network: one all-reduce of every bucket;
- ``one_buffer`` (``training.ddp.one_gradient_sync``): no reducer, the gradients that exist averaged in one flat
  all-reduce.

    python benchmarks/ddp_gradient_sync.py --processes 2 --layers 8 --fch 8 --size 64 128 --batch 2

Runs on the CPU over gloo (``--device cuda``: NCCL, one GPU per process). Prints, per way, the median step time,
the all-reduce calls and the elements they carry per step, and how far its weights after the first step are from
``per_member``'s (float rounding only).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Dict, List

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hyctas_lightning.models import SuperNet
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.training import SandwichSampler, segmentation_loss
from hyctas_lightning.training.ddp import all_reduce_gradients

WAYS = ("per_member", "last_member", "one_buffer")
ALL_REDUCE = dist.all_reduce


class Sub(nn.Module):
    """The supernet with the architecture as a forward argument, so DDP can wrap it."""

    def __init__(self, supernet: SuperNet) -> None:
        super().__init__()
        self.supernet = supernet

    def forward(self, images: torch.Tensor, arch) -> torch.Tensor:
        return self.supernet(images, arch)


def counting_all_reduce(counter: Dict[str, int]):
    """Make ``dist.all_reduce`` count its calls and elements; returns a DDP comm hook that does the same for DDP's
    buckets (averaging them, as DDP's default hook does)."""
    def counting(tensor, *args, **kwargs):
        counter["calls"] += 1
        counter["elements"] += tensor.numel()
        return ALL_REDUCE(tensor, *args, **kwargs)

    def hook(state, bucket):
        buffer = bucket.buffer().div_(dist.get_world_size())
        return counting(buffer, async_op=True).get_future().then(lambda fut: fut.value()[0])

    dist.all_reduce = counting
    return hook


def run(rank: int, args: argparse.Namespace, init: str, results: str) -> None:
    device = torch.device(f"cuda:{rank}" if args.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.set_num_threads(1)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=init, rank=rank,
                            world_size=args.processes)
    space = SearchSpace(layers=args.layers, fch=args.fch)
    sampler = SandwichSampler(space, num_random=2, seed=0)
    generator = torch.Generator().manual_seed(rank)
    images = torch.randn(args.batch, 3, *args.size, generator=generator).to(device)
    masks = torch.randint(0, 8, (args.batch, *args.size), generator=generator).to(device)
    rows = {}
    weights = {}
    for way in WAYS:
        torch.manual_seed(0)
        model = Sub(SuperNet(space, num_classes=8)).to(device)
        counter = {"calls": 0, "elements": 0}
        hook = counting_all_reduce(counter)
        ddp = None
        if way != "one_buffer":
            ddp = DistributedDataParallel(model, find_unused_parameters=True)
            ddp.register_comm_hook(None, hook)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        times: List[float] = []
        for step in range(args.warmup + args.steps):
            if step == args.warmup:
                counter.update(calls=0, elements=0)
            start = time.perf_counter()
            optimizer.zero_grad()
            draws = sampler.sample(step)
            for k, (_, arch) in enumerate(draws):
                last = k == len(draws) - 1
                if ddp is None:
                    loss = segmentation_loss(model(images, arch), masks, 255)
                    loss.backward()
                elif way == "per_member" or last:
                    segmentation_loss(ddp(images, arch), masks, 255).backward()
                else:
                    with ddp.no_sync():
                        segmentation_loss(ddp(images, arch), masks, 255).backward()
            if ddp is None:
                all_reduce_gradients(model.parameters())
            optimizer.step()
            if step == 0:  # after one step the three agree to float rounding (later, rounding grows chaotically)
                weights[way] = [p.detach().cpu().clone() for p in model.parameters()]
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
        rows[way] = {"ms": 1e3 * statistics.median(times), "calls": counter["calls"] / args.steps,
                     "elements": counter["elements"] / args.steps}
    if rank == 0:
        same = {way: max(float((a - b).abs().max()) for a, b in zip(weights[way], weights["per_member"]))
                for way in WAYS}
        torch.save({"rows": rows, "same": same,
                    "params": sum(p.numel() for p in model.parameters())}, results)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--fch", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 128))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = os.path.join(tmp, "results.pt")
        mp.spawn(run, args=(args, f"file://{os.path.join(tmp, 'rendezvous')}", results), nprocs=args.processes)
        out = torch.load(results)
    print(f"{args.processes} processes ({args.device}), supernet of {out['params'] / 1e6:.2f} M parameters, "
          f"sandwich of 4, batch {args.batch} at {args.size[0]}x{args.size[1]} per process, median of {args.steps} "
          f"steps")
    print("| way | ms per step | all-reduce calls per step | elements all-reduced per step | weights after step 1: "
          "max difference |")
    print("|---|---:|---:|---:|---:|")
    for way, row in out["rows"].items():
        print(f"| {way} | {row['ms']:.1f} | {row['calls']:.0f} | {row['elements'] / 1e6:.2f} M | "
              f"{out['same'][way]:.1e} |")


if __name__ == "__main__":
    main()
