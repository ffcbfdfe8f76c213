"""Latency of the HyCTAS presets (S/M/L as released, S/M at the paper's size) at 1024x2048 against LRASPP- and
DeepLabV3-MobileNetV3-Large, by the paper's protocol (batch 1, CUDA events, warm-up, median), plain and along the
optimised inference path.

    python benchmarks/latency_presets.py --out runs/bench/presets

Each network is timed in turn and its rows saved to ``--out``/parts/NAME.json, so a rerun after an interruption
times only what is missing (a part measured with other settings or on another device is timed again). Prints the
tables and writes ``bench.md`` (with the paper's and the release's figures beside ours) and ``bench.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import List, Optional

import torch

from hyctas_lightning.evaluation.bench import PEERS, BenchReport, BenchRow, bench
from hyctas_lightning.evaluation.latency import Latency
from hyctas_lightning.models import create_network

PRESETS = ("hyctas_s", "hyctas_m", "hyctas_l", "hyctas_s_paper", "hyctas_m_paper")
# Paper table 2 (RTX 3090, 1024x2048, batch 1, fp32 PyTorch without TensorRT): FPS, GFLOPs (mult-adds), params (M).
PAPER = {"hyctas_s": (159.2, 13.0, 1.5), "hyctas_m": (87.8, 29.4, 2.4), "hyctas_l": (12.4, 527.0, 43.2)}
# The released architecture files counted by the release's own builder (19 classes, no auxiliary heads,
# attention matmuls included): GMACs, params (M).
RELEASE = {"hyctas_s": (53.2, 8.05), "hyctas_m": (78.6, 6.29), "hyctas_l": (510.5, 44.7)}


def _paper_name(preset: str) -> str:
    return preset.removesuffix("_paper")


def paper_table(report: BenchReport) -> str:
    """The paper's and the release's figures beside ours: fp32 eager (the paper's setting) and our fastest variant.
    Paper-size presets are compared with the paper's figures of the network they resize."""
    lines = ["| preset | paper FPS (RTX 3090) | fp32 FPS (ours) | fastest variant | its FPS | GMACs paper / release / "
             "ours | params (M) paper / release / ours |", "|---|---:|---:|---|---:|---:|---:|"]
    for name in PRESETS:
        rows = [r for r in report.rows if r.network == name]
        if not rows:
            continue
        fps, macs, params = PAPER[_paper_name(name)]
        release_macs, release_params = RELEASE[name] if name in RELEASE else ("-", "-")
        plain = next((r for r in rows if r.variant == "fp32"), rows[0])
        best = min(rows, key=lambda r: r.latency.median_ms)
        lines.append(f"| {name} | {fps:.1f} | {plain.latency.fps:.1f} | {best.variant} | {best.latency.fps:.1f} | "
                     f"{macs:.1f} / {release_macs} / {plain.macs_g:.1f} | {params:.1f} / {release_params} / "
                     f"{plain.params_m:.2f} |")
    return "\n".join(lines)


def versus_lraspp(report: BenchReport, network: str = "hyctas_s", variant: str = "fp32") -> Optional[str]:
    """One line: does ``network`` beat LRASPP-MobileNetV3-Large under ``variant``?"""
    rows = {r.network: r for r in report.rows if r.variant == variant}
    if network not in rows or PEERS[0] not in rows:
        return None
    ours, peer = rows[network].latency.median_ms, rows[PEERS[0]].latency.median_ms
    verdict = "faster" if ours < peer else "NOT faster"
    return (f"{network} {variant}: {ours:.2f} ms vs {PEERS[0]} {peer:.2f} ms: {peer / ours:.2f}x ({verdict})")


def _settings(args: argparse.Namespace, device: str) -> dict:
    return {"size": list(args.size), "variants": list(args.variants), "warmup": args.warmup, "runs": args.runs,
            "device": device}


def _load_part(path: Path, settings: dict) -> Optional[dict]:
    if not path.is_file():
        return None
    part = json.loads(path.read_text())
    return part if part.get("settings") == settings else None


def _row(data: dict) -> BenchRow:
    latency = data.pop("latency")
    return BenchRow(**data, latency=Latency(**{**latency, "size": tuple(latency["size"])}))


def time_network(name: str, role: str, args: argparse.Namespace) -> BenchReport:
    """Bench one preset (role ``network``) or one peer alone, under the script's settings."""
    timed = {name: create_network(name, args.num_classes)}
    if role == "network":
        return bench(timed, args.size, args.variants, None, args.device, args.warmup, args.runs)
    return bench({}, args.size, args.variants, timed, args.device, args.warmup, args.runs)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for bench.md, bench.json and the per-network parts")
    parser.add_argument("--size", nargs=2, type=int, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--variants", nargs="+", default=[], help="default: hyctas bench's for the device")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--num_classes", type=int, default=19)
    args = parser.parse_args(argv)
    backend = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    device = torch.cuda.get_device_name() if backend == "cuda" else "cpu"
    settings = _settings(args, device)
    out = Path(args.out)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    report = BenchReport((args.size[0], args.size[1]), backend, device, args.warmup, args.runs)
    for name, role in [(p, "network") for p in PRESETS] + [(p, "peer") for p in PEERS]:
        path = out / "parts" / f"{name}.json"
        part = _load_part(path, settings)
        if part is None:
            print(f"{name}: timing", flush=True)
            timed = time_network(name, role, args)
            part = {"settings": settings, "rows": [dataclasses.asdict(r) for r in timed.rows],
                    "failures": timed.failures}
            path.write_text(json.dumps(part, indent=1) + "\n")
        else:
            print(f"{name}: from {path}", flush=True)
        report.rows += [_row(dict(r)) for r in part["rows"]]
        report.failures += part["failures"]
    report.write(out)
    comparison = paper_table(report)
    verdict = versus_lraspp(report)
    print(f"\n{report.markdown()}\n\n{comparison}\n" + (f"\n{verdict}\n" if verdict else ""))
    with (out / "bench.md").open("a") as f:
        f.write(f"\nAgainst the paper (table 2) and the released files:\n\n{comparison}\n"
                + (f"\n{verdict}\n" if verdict else ""))
    data = json.loads((out / "bench.json").read_text())
    data["paper"] = {n: {"fps": f, "macs_g": m, "params_m": p} for n, (f, m, p) in PAPER.items()}
    data["release"] = {n: {"macs_g": m, "params_m": p} for n, (m, p) in RELEASE.items()}
    (out / "bench.json").write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
