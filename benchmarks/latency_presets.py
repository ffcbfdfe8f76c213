"""Latency of the released HyCTAS-S/M/L at 1024x2048 against LRASPP- and DeepLabV3-MobileNetV3-Large, by the
paper's protocol (batch 1, CUDA events, warm-up, median), plain and along the optimised inference path.

    python benchmarks/latency_presets.py --out runs/bench/presets

Prints the tables and writes ``bench.md`` (with the paper's FPS beside ours) and ``bench.json`` to ``--out``.
Every variant of every network runs in this one process on one GPU, so the ratios compare like with like.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional

from hyctas_lightning.evaluation.bench import PEERS, BenchReport, bench
from hyctas_lightning.models import create_network

PRESETS = ("hyctas_s", "hyctas_m", "hyctas_l")
# Paper table 2 (RTX 3090, 1024x2048, batch 1, fp32 PyTorch without TensorRT): FPS, GFLOPs (mult-adds), params (M).
PAPER = {"hyctas_s": (159.2, 13.0, 1.5), "hyctas_m": (87.8, 29.4, 2.4), "hyctas_l": (12.4, 527.0, 43.2)}


def paper_table(report: BenchReport) -> str:
    """The paper's figures beside ours: fp32 eager (the paper's setting) and our fastest variant."""
    lines = ["| network | paper FPS (RTX 3090) | fp32 FPS (ours) | fastest variant | its FPS | "
             "paper GMACs / ours | paper params (M) / ours |", "|---|---:|---:|---|---:|---:|---:|"]
    for name, (fps, macs, params) in PAPER.items():
        rows = [r for r in report.rows if r.network == name]
        if not rows:
            continue
        plain = next((r for r in rows if r.variant == "fp32"), rows[0])
        best = min(rows, key=lambda r: r.latency.median_ms)
        lines.append(f"| {name} | {fps:.1f} | {plain.latency.fps:.1f} | {best.variant} | {best.latency.fps:.1f} | "
                     f"{macs:.1f} / {plain.macs_g:.1f} | {params:.1f} / {plain.params_m:.2f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for bench.md and bench.json")
    parser.add_argument("--size", nargs=2, type=int, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--variants", nargs="+", default=[], help="default: hyctas bench's for the device")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args(argv)
    report = bench({p: create_network(p) for p in PRESETS}, args.size, args.variants,
                   {p: create_network(p) for p in PEERS}, args.device, args.warmup, args.runs)
    out = Path(args.out)
    report.write(out)
    comparison = paper_table(report)
    print(f"\n{report.markdown()}\n\n{comparison}")
    with (out / "bench.md").open("a") as f:
        f.write(f"\nAgainst the paper (table 2):\n\n{comparison}\n")
    data = json.loads((out / "bench.json").read_text())
    data["paper"] = {n: {"fps": f, "macs_g": m, "params_m": p} for n, (f, m, p) in PAPER.items()}
    (out / "bench.json").write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
