"""Does fusing conv + bias (+ residual) + ReLU into one cuDNN call pay in eager fp32? An interleaved A/B in one
process: each network timed at each size with fp32 in ``layers.functional.FUSED_CONV_DTYPES`` and without it,
alternating, ``--repeat`` times, with a reference network (LRASPP-MobileNetV3-Large: torchvision's layers, which the
switch does not touch) timed in the same rounds, so a host that drifts moves both arms alike.

    python benchmarks/fused_inference_ab.py --json docs/bench/h100_2026-12-06/inference_fp32_fusion_ab.json
    python benchmarks/fused_inference_ab.py --networks hyctas_s model_zoo/camvid/searched_camvid.ckpt --sizes 360x480

Each timing is ``evaluation.measure_latency`` (CUDA events, the median of ``--runs`` passes after ``--warmup``); the
table gives per network, size and arm the median over the repeats, every repeat, and the speed-up over the
reference. Needs a GPU (the fused calls are cuDNN's).
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import torch

from hyctas_lightning import create_network
from hyctas_lightning.evaluation.latency import measure_latency
from hyctas_lightning.layers import functional

REFERENCE = "lraspp_mobilenet_v3_large"
FUSED = tuple(functional.FUSED_CONV_DTYPES)
UNFUSED = tuple(d for d in FUSED if d != torch.float32)


def build(name: str) -> torch.nn.Module:
    """A preset or registered name, or a retrain checkpoint (``.ckpt``)."""
    return create_network(checkpoint=name) if name.endswith(".ckpt") else create_network(name, num_classes=19)


def rounds(nets: Dict[str, torch.nn.Module], sizes: List[tuple], args: argparse.Namespace) -> List[dict]:
    """Every (repeat, size, network, arm) timing, the arms of a network back to back."""
    rows = []
    for repeat in range(args.repeat):
        for size in sizes:
            for name, net in nets.items():
                for fused in ((True,) if name == REFERENCE else (True, False)):
                    functional.FUSED_CONV_DTYPES = FUSED if fused else UNFUSED
                    ms = measure_latency(net, size, warmup=args.warmup, runs=args.runs).median_ms
                    rows.append({"repeat": repeat, "size": list(size), "network": name, "fused_fp32": fused, "ms": ms})
                    print(f"repeat {repeat} {size[0]}x{size[1]} {name} {'fused' if fused else 'unfused'}: {ms:.3f} ms",
                          flush=True)
    functional.FUSED_CONV_DTYPES = FUSED
    return rows


def table(rows: List[dict]) -> str:
    lines = ["| size | network | fp32 | median ms | repeats (ms) | x LRASPP |", "|---|---|---|---:|---|---:|"]
    for size in dict.fromkeys(tuple(r["size"]) for r in rows):
        at = [r for r in rows if tuple(r["size"]) == size]
        reference = statistics.median(r["ms"] for r in at if r["network"] == REFERENCE)
        for name in dict.fromkeys(r["network"] for r in at if r["network"] != REFERENCE):
            for fused in (True, False):
                times = [r["ms"] for r in at if r["network"] == name and r["fused_fp32"] == fused]
                median = statistics.median(times)
                lines.append(f"| {size[0]}x{size[1]} | {name} | {'fused' if fused else 'unfused'} | {median:.3f} | "
                             f"{', '.join(f'{t:.2f}' for t in times)} | {reference / median:.2f} |")
        lines.append(f"| {size[0]}x{size[1]} | {REFERENCE} | (unaffected) | {reference:.3f} | | 1.00 |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=["hyctas_s", "hyctas_m",
                                                          "model_zoo/camvid/searched_camvid.ckpt"])
    parser.add_argument("--sizes", nargs="+", default=["1024x2048", "360x480"], help="HxW")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", default=None, help="also write the timings here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a GPU: the fused calls are cuDNN's")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    nets = {name: build(name) for name in [*args.networks, REFERENCE]}
    rows = rounds(nets, sizes, args)
    command = f"python {shlex.join(sys.argv)}"
    print(f"command: {command}\ndevice: {torch.cuda.get_device_name()}; torch {torch.__version__}\n{table(rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                                               "command": command, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
