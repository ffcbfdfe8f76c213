"""Which switches of the eager inference path pay in fp32 at batch 1, where the host's launches set the pace? An
interleaved A/B in one process: each network timed at each size under every arm (a setting of
``layers.functional``), the arms back to back, ``--repeat`` times, with a reference network (LRASPP-MobileNetV3-Large:
torchvision's layers, which no arm touches) timed in the same rounds, so a host that drifts moves every arm alike.

- ``default``: the shipped settings (fp32 convolutions fused with bias, residual and ReLU into one cuDNN call);
- ``unfused_fp32``: fp32 convolutions on PyTorch's ops (conv, bias add, sum, ReLU: a launch each);
- ``nchw_resize``: every resize outside autograd on the NCHW kernel (``PIXEL_PARALLEL = 0``), without the two
  layout copies the channels-last kernel costs for small outputs: fewer launches, slower kernels.

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

from hyctas_lightning.evaluation.latency import measure_latency
from hyctas_lightning.layers import functional
from inference_profile import SIZES, load, parse_size

REFERENCE = "lraspp_mobilenet_v3_large"
DEFAULTS = {"FUSED_CONV_DTYPES": functional.FUSED_CONV_DTYPES, "PIXEL_PARALLEL": functional.PIXEL_PARALLEL}
ARMS = {"default": {},
        "unfused_fp32": {"FUSED_CONV_DTYPES": tuple(d for d in functional.FUSED_CONV_DTYPES if d != torch.float32)},
        "nchw_resize": {"PIXEL_PARALLEL": 0}}


def set_arm(name: str) -> None:
    for key, value in {**DEFAULTS, **ARMS[name]}.items():
        setattr(functional, key, value)


def rounds(nets: Dict[str, torch.nn.Module], sizes: List[tuple], args: argparse.Namespace) -> List[dict]:
    """Every (repeat, size, network, arm) timing, the arms of a network back to back."""
    rows = []
    for repeat in range(args.repeat):
        for size in sizes:
            for name, net in nets.items():
                for arm in (["default"] if name == REFERENCE else args.arms):
                    set_arm(arm)
                    ms = measure_latency(net, size, warmup=args.warmup, runs=args.runs).median_ms
                    rows.append({"repeat": repeat, "size": list(size), "network": name, "arm": arm, "ms": ms})
                    print(f"repeat {repeat} {size[0]}x{size[1]} {name} {arm}: {ms:.3f} ms", flush=True)
    set_arm("default")
    return rows


def table(rows: List[dict]) -> str:
    lines = ["| size | network | arm | median ms | repeats (ms) | x LRASPP |", "|---|---|---|---:|---|---:|"]
    for size in dict.fromkeys(tuple(r["size"]) for r in rows):
        at = [r for r in rows if tuple(r["size"]) == size]
        reference = statistics.median(r["ms"] for r in at if r["network"] == REFERENCE)
        for name in dict.fromkeys(r["network"] for r in at if r["network"] != REFERENCE):
            for arm in dict.fromkeys(r["arm"] for r in at if r["network"] == name):
                times = [r["ms"] for r in at if r["network"] == name and r["arm"] == arm]
                median = statistics.median(times)
                lines.append(f"| {size[0]}x{size[1]} | {name} | {arm} | {median:.3f} | "
                             f"{', '.join(f'{t:.2f}' for t in times)} | {reference / median:.2f} |")
        lines.append(f"| {size[0]}x{size[1]} | {REFERENCE} | (no arm applies) | {reference:.3f} | | 1.00 |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=["hyctas_s", "hyctas_m",
                                                          "model_zoo/camvid/searched_camvid.ckpt"])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[parse_size(s) for s in SIZES], help="HxW")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", default=None, help="also write the timings here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a GPU: the fused calls are cuDNN's")
    nets = {name: load(name, num_classes=19) for name in [*args.networks, REFERENCE]}
    rows = rounds(nets, args.sizes, args)
    command = f"python {shlex.join(sys.argv)}"
    print(f"command: {command}\ndevice: {torch.cuda.get_device_name()}; torch {torch.__version__}\n{table(rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                                               "command": command, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
