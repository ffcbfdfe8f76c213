"""The report stage of ``camvid_pipeline.py``: ``RESULTS.md`` (tables, verdict, rank correlation) and
``pareto.png`` (search candidates, the retrained networks and the baselines) from the run folder's files."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import kendalltau

from hyctas_lightning.data import CAMVID_CLASSES
from hyctas_lightning.search.journal import Candidate

REFERENCE = "lraspp_mobilenet_v3_large"


def plot(path: Path, candidates: Sequence[Candidate], results: Dict[str, dict], picks: Dict[str, dict]) -> None:
    """Supernet estimates of every candidate (grey) and retrained networks (coloured), mIoU against latency."""
    fig = Figure(figsize=(7, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    feasible = [c for c in candidates if c.feasible]
    ax.scatter([c.measurements["latency_ms"] for c in feasible], [100 * c.measurements["miou"] for c in feasible],
               s=12, c="0.75", label="search candidates (supernet mIoU)")
    for name, r in results.items():
        searched = name in picks
        x, y = r["latency_camvid"]["fp32"], 100 * r["miou"]
        ax.scatter([x], [y], s=70, marker="*" if searched else "s", c="crimson" if searched else "navy", zorder=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        if searched:
            estimate = picks[name]["measurements"]
            ax.plot([estimate["latency_ms"], x], [100 * estimate["miou"], y], c="crimson", lw=0.6, alpha=0.5)
    ax.scatter([], [], marker="*", c="crimson", label="searched, retrained")
    ax.scatter([], [], marker="s", c="navy", label="baselines, retrained")
    ax.set_xlabel("latency at 360x480, batch 1, fp32 (ms)")
    ax.set_ylabel("CamVid val mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, bbox_inches="tight")


def table(results: Dict[str, dict]) -> List[str]:
    precisions = list(next(iter(results.values()))["latency_camvid"])  # the variants the latency stage timed
    head = ("| network | val mIoU | params (M) | mult-adds (G) 360x480 / 1024x2048 | "
            + " | ".join(f"360x480 {p} ms (FPS)" for p in precisions) + " | "
            + " | ".join(f"1024x2048 {p} ms (FPS)" for p in precisions) + " | training (s, images/s) |")
    rows = [head, "|" + "---|" * (5 + 2 * len(precisions))]
    for name, r in sorted(results.items(), key=lambda kv: -kv[1]["miou"]):
        cells = [_ms_fps(r[f"latency_{s}"].get(p)) for s in ("camvid", "cityscapes") for p in precisions]
        ips = f"{r['images_per_s']:.0f}" if r.get("images_per_s") else "-"
        rows.append(f"| {name} | {100 * r['miou']:.2f} | {r['params_m']:.2f} | {r['macs_g_camvid']:.2f} / "
                    f"{r['macs_g_cityscapes']:.1f} | " + " | ".join(cells) + f" | {r['train_seconds']:.0f}, {ips} |")
    return rows


def _ms_fps(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.2f} ({1000 / ms:.0f})"


def class_table(results: Dict[str, dict]) -> List[str]:
    names = sorted(results, key=lambda n: -results[n]["miou"])
    rows = ["| class | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for c in CAMVID_CLASSES:
        rows.append(f"| {c} | " + " | ".join(f"{100 * results[n]['iou'][c]:.1f}" for n in names) + " |")
    return rows


def verdict(results: Dict[str, dict], picks: Dict[str, dict]) -> List[str]:
    ref = results[REFERENCE]
    lines = []
    for name in picks:
        r = results[name]
        d_miou = 100 * (r["miou"] - ref["miou"])
        d_lat = r["latency_camvid"]["fp32"] / ref["latency_camvid"]["fp32"]
        beats = d_miou > 0 and d_lat < 1
        lines.append(f"- {name}: {d_miou:+.2f} mIoU points and {d_lat:.2f}x the latency of {REFERENCE} "
                     f"(360x480, fp32) — {'beats it on both' if beats else 'does not beat it on both'}.")
    return lines


def rank_correlation(results: Dict[str, dict], picks: Dict[str, dict]) -> str:
    estimated = [picks[n]["measurements"]["miou"] for n in picks]
    retrained = [results[n]["miou"] for n in picks]
    tau, p = kendalltau(estimated, retrained)
    pairs = ", ".join(f"{n} {100 * e:.1f} -> {100 * r:.1f}" for n, e, r in zip(picks, estimated, retrained))
    return (f"Kendall tau between supernet mIoU and retrained mIoU over the {len(picks)} retrained searched networks: "
            f"{tau:.2f} (p = {p:.2f}; {pairs}).")


def write_report(run: Path, picks: Dict[str, dict], candidates: Sequence[Candidate]) -> Path:
    results = json.loads((run / "results.json").read_text())
    cap = json.loads((run / "latency_cap.json").read_text())
    plot(run / "pareto.png", candidates, results, picks)
    device = next(iter(results.values()))["device"]
    text = [f"# CamVid results ({device})", "",
            f"Search: {len(candidates)} candidates evaluated through the supernet, latency cap "
            f"{cap['cap_ms']:.2f} ms = {cap['factor']:g} x {cap['network']}'s {cap['median_ms']:.2f} ms at 360x480, "
            "fp32, batch 1.", "",
            *table(results), "", "Per-class IoU (%):", "", *class_table(results), "", *verdict(results, picks), "",
            rank_correlation(results, picks), "", "![pareto](pareto.png)", ""]
    path = run / "RESULTS.md"
    path.write_text("\n".join(text))
    print("\n".join(text))
    return path
