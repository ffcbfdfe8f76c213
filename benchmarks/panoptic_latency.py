"""Panoptic inference cost at the deployment resolution (Cityscapes 1024x2048, batch 1): the post-processing, and
HyCTAS-S/L under the panoptic head, each by the paper's latency protocol (warm-up, then the median of timed passes;
CUDA events on a GPU, wall clock on a CPU), and their sum.

    python benchmarks/panoptic_latency.py --out runs/bench/panoptic                  # GPU, the full table
    python benchmarks/panoptic_latency.py --size 64 128 --device cpu --warmup 1 --runs 3 --out /tmp/pan  # smoke test

Post-processing runs on two inputs: a street scene's own ground-truth targets (a synthetic scene rendered at
``--size``: its semantic mask, centre heatmap and offsets, a realistic number of instances) and a worst case
(a heatmap with more peaks than ``top_k``, so 200 centres, and things everywhere). Networks: fp32 (the paper's
setting) and fp16 with BatchNorm folded and channels-last. Every finished row is appended to ``ROWS.jsonl`` in
``--out``; a rerun skips the rows already there and prints the whole table (``panoptic_latency.md``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from hyctas_lightning.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_THINGS
from hyctas_lightning.data.labels import LABEL_DIVISOR
from hyctas_lightning.data.panoptic import PanopticTargetConfig, panoptic_targets, thing_mask
from hyctas_lightning.data.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_THINGS, render_panoptic_scene
from hyctas_lightning.evaluation import fold_batchnorm
from hyctas_lightning.evaluation.latency import measure_latency
from hyctas_lightning.evaluation.panoptic_inference import PanopticPostProcess
from hyctas_lightning.models import PanopticNetwork, create_network

PRESETS = ("hyctas_s", "hyctas_l")
THINGS = tuple(CITYSCAPES_CLASSES.index(n) for n in CITYSCAPES_THINGS)


class PostProcessOnly(nn.Module):
    """Times the post-processing of fixed network outputs (the input image is ignored)."""

    def __init__(self, post: PanopticPostProcess, semantic: torch.Tensor, center: torch.Tensor,
                 offset: torch.Tensor) -> None:
        super().__init__()
        self.post = post
        self.register_buffer("semantic", semantic)
        self.register_buffer("center", center)
        self.register_buffer("offset", offset)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.post(self.semantic, self.center, self.offset)


class NetworkOnly(nn.Module):
    """The network on an fp32 image cast to its dtype and layout (part of the time, as in ``hyctas bench``)."""

    def __init__(self, net: nn.Module, fp16: bool) -> None:
        super().__init__()
        self.net, self.fp16 = net, fp16

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self.fp16:
            images = images.to(dtype=torch.float16, memory_format=torch.channels_last)
        return self.net(images)


def scene_inputs(size: List[int]) -> tuple:
    """A synthetic street scene's ground-truth targets at ``size``, with its classes mapped onto Cityscapes'."""
    _, mask, instances = render_panoptic_scene(0, tuple(size))
    to_cityscapes = torch.tensor([CITYSCAPES_CLASSES.index(n) for n in
                                  ("road", "sidewalk", "building", "sky", "car", "pole", "person", "vegetation")])
    semantic = to_cityscapes[torch.from_numpy(mask).long()]
    panoptic = torch.from_numpy(mask).long() * LABEL_DIVISOR + torch.from_numpy(instances).long()
    own_things = thing_mask(len(SYNTHETIC_CLASSES), [SYNTHETIC_CLASSES.index(n) for n in SYNTHETIC_THINGS])
    targets = panoptic_targets(torch.from_numpy(mask).long(), panoptic, own_things, PanopticTargetConfig())
    count = int((targets["center"] == 1.0).sum())
    return semantic[None], targets["center"][None], targets["offset"][None], count


def worst_inputs(size: List[int], top_k: int) -> tuple:
    """Things everywhere and a heatmap with 4 x ``top_k`` separated peaks: grouping against ``top_k`` centres."""
    height, width = size
    generator = torch.Generator().manual_seed(0)
    semantic = torch.tensor(THINGS)[torch.randint(len(THINGS), (1, height, width), generator=generator)]
    center = torch.zeros(1, 1, height, width)
    peaks = torch.randperm(height * width, generator=generator)[: 4 * top_k]
    center.view(-1)[peaks] = torch.rand(len(peaks), generator=generator) * 0.8 + 0.15
    offset = torch.randn(1, 2, height, width, generator=generator) * 20
    return semantic, center, offset, top_k


def panoptic_network(preset: str, fp16: bool) -> nn.Module:
    classes = len(CITYSCAPES_CLASSES)
    net = PanopticNetwork(create_network(preset, classes), classes).eval()
    if fp16:
        fold_batchnorm(net)
        net = net.half().to(memory_format=torch.channels_last)
    return net


def rows_to_run(args: argparse.Namespace) -> Dict[str, Callable[[], tuple]]:
    """Row name -> builder of (module to time, note)."""
    post = PanopticPostProcess(THINGS, len(CITYSCAPES_CLASSES))
    rows: Dict[str, Callable[[], tuple]] = {}

    def post_row(inputs: Callable[[], tuple], label: str) -> Callable[[], tuple]:
        def build() -> tuple:
            semantic, center, offset, centres = inputs()
            return PostProcessOnly(post, semantic, center, offset), f"{label}, {centres} centres"
        return build

    rows["post-processing (street scene)"] = post_row(lambda: scene_inputs(args.size), "ground-truth targets")
    rows["post-processing (worst case)"] = post_row(lambda: worst_inputs(args.size, post.top_k), "things everywhere")
    for preset in args.presets:
        for fp16 in (False, True):
            variant = "fp16-fold-cl" if fp16 else "fp32"
            rows[f"{preset} {variant} network"] = (
                lambda p=preset, f=fp16: (NetworkOnly(panoptic_network(p, f), f), "semantic+centre+offset"))
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for ROWS.jsonl and panoptic_latency.md")
    parser.add_argument("--size", nargs=2, type=int, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args(argv)
    backend = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if backend == "cpu" and args.device == "auto":
        print("no GPU: timing on the CPU (wall clock)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "ROWS.jsonl"
    done = {json.loads(line)["row"]: json.loads(line) for line in journal.read_text().splitlines()} \
        if journal.is_file() else {}
    for name, build in rows_to_run(args).items():
        if name in done and done[name]["size"] == args.size and done[name]["backend"] == backend:
            continue
        module, note = build()
        if backend == "cpu" and next(module.parameters(), torch.zeros(())).dtype == torch.float16:
            note = "skipped: fp16 needs a GPU"
            latency = None
        else:
            latency = measure_latency(module, args.size, backend, args.warmup, args.runs).to_dict()
        done[name] = {"row": name, "size": args.size, "backend": backend, "note": note, "latency": latency}
        with journal.open("a") as f:
            f.write(json.dumps(done[name]) + "\n")
        shown = "-" if latency is None else f"{latency['median_ms']:.2f} ms"
        print(f"{name}: {shown} ({note})")
    device = next((r["latency"]["device"] for r in done.values() if r["latency"]), backend)
    lines = [f"Panoptic inference at {args.size[0]}x{args.size[1]}, batch 1, {device} ({backend}), median of "
             f"{args.runs} after {args.warmup} warm-up", "",
             "| row | median (ms) | p10 | p90 | FPS | note |", "|---|---:|---:|---:|---:|---|"]
    for name in rows_to_run(args):
        r = done[name]
        if r["latency"] is None:
            lines.append(f"| {name} | - | - | - | - | {r['note']} |")
        else:
            lat = r["latency"]
            lines.append(f"| {name} | {lat['median_ms']:.2f} | {lat['p10_ms']:.2f} | {lat['p90_ms']:.2f} | "
                         f"{lat['fps']:.1f} | {r['note']} |")
    scene = done["post-processing (street scene)"]["latency"]
    lines += ["", "Network + post-processing of a street scene (sum of the rows above; untrained networks predict no "
              "centres, so the two are timed apart):", "", "| network | total (ms) | FPS |", "|---|---:|---:|"]
    for name, r in done.items():
        if name.endswith(" network") and r["latency"] is not None and r["size"] == args.size:
            total = r["latency"]["median_ms"] + scene["median_ms"]
            lines.append(f"| {name[:-len(' network')]} | {total:.2f} | {1000 / total:.1f} |")
    table = "\n".join(lines)
    (out / "panoptic_latency.md").write_text(table + "\n")
    print(f"\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
