"""The run's report, ``REPORT.md`` with ``pareto.png`` and ``rank.png``, made from the run folder's
``manifest.json``, ``results.json`` and ``candidates.json`` alone: no checkpoint, log or GPU is needed, so a
committed copy of those three files regenerates it anywhere."""
from __future__ import annotations

import math
from pathlib import Path
from statistics import fmean
from typing import Any, Dict, List, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hyctas_lightning.fileio import atomic_write_text

from .config import STAGES

Results = Dict[str, Any]


def pct(value: Optional[float]) -> str:
    """A fraction as a percentage with two decimals; ``-`` when missing."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def statistics_of(rank: Dict[str, Any]) -> Dict[str, Any]:
    """The rank study's statistics as numbers: ``results.json`` holds an undefined coefficient (a constant side
    ranks nothing) as null, which reads back as NaN."""
    def number(value: Any) -> Any:
        return math.nan if value is None else value

    return {k: [number(x) for x in v] if isinstance(v, list) else number(v) for k, v in rank["statistics"].items()}


def ms(value: Optional[float]) -> str:
    """Milliseconds with two decimals; ``-`` when missing."""
    return "-" if value is None else f"{value:.2f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> List[str]:
    """A markdown table; ``align`` gives each column's ``l`` or ``r`` (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    return ["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(r) + " |" for r in rows)]


def ordered(results: Results) -> List[str]:
    """Network names, best mean mIoU first."""
    networks = results.get("networks", {})
    return sorted(networks, key=lambda n: -networks[n].get("miou_mean", -1))


def seeds_of(results: Results) -> List[str]:
    """Every training seed of the evaluated networks, in order."""
    return sorted({s for n in results.get("networks", {}).values() for s in n.get("seeds", {})}, key=int)


# ---------------------------------------------------------------------------------------------- sections
def setup(results: Results, manifest: Dict[str, Any]) -> List[str]:
    """The run's setting: data, search, cap and latency protocol, as the report's first lines."""
    search, cap, lat = results.get("search", {}), results.get("cap", {}), results.get("latency", {})
    classes = results.get("classes") or []
    config = manifest.get("config", {})
    lines = [f"Data: {len(classes)} classes, evaluated whole-image on the `{results.get('split', '?')}` split; "
             f"recipe {', '.join(f'`{f}`' for f in config.get('train', {}).get('config', []))}"
             f"{' with ' + ' '.join(config['train']['args']) if config.get('train', {}).get('args') else ''}. "
             f"Latency: batch 1 on {lat.get('device', '?')}, median of {lat.get('runs', '?')} passes after "
             f"{lat.get('warmup', '?')} warm-up passes."]
    if search:
        lines += ["", f"Search: {search['population']} x {search['generations']} generations, objectives "
                      f"{', '.join(search['objectives'])}, latency in `{search['variant']}` at "
                      f"{'x'.join(map(str, search['size']))} ({search['backend']}); cap {ms(cap.get('cap_ms'))} ms = "
                      f"{cap.get('factor', '?'):g} x {cap.get('reference', '?')}'s {ms(cap.get('reference_ms'))} ms "
                      f"in the same variant and size on {cap.get('device', '?')}."]
    return lines


def latency_columns(results: Results) -> List[tuple]:
    """(size, variant) of every latency column."""
    lat = results.get("latency", {})
    return [(size, variant) for size in lat.get("sizes", []) for variant in lat.get("variants", [])]


def networks_table(results: Results) -> List[str]:
    """Every network: mIoU per seed and mean, size, latency per variant and size."""
    seeds, columns = seeds_of(results), latency_columns(results)
    sizes = results.get("latency", {}).get("sizes", [])
    header = ["network", "kind", *(f"mIoU seed {s}" for s in seeds), "mean ± std", "params (M)",
              *(f"mult-adds (G) {s}" for s in sizes), *(f"{s} {v} (ms)" for s, v in columns), "supernet mIoU",
              "training s / images/s"]
    rows = []
    for name in ordered(results):
        r = results["networks"][name]
        std = r.get("miou_std")
        cells = [name, r.get("kind", "-"), *(pct(r.get("seeds", {}).get(s, {}).get("miou")) for s in seeds),
                 pct(r.get("miou_mean")) + ("" if std is None else f" ± {pct(std)}"),
                 "-" if r.get("params_m") is None else f"{r['params_m']:.2f}",
                 *("-" if r.get("macs_g", {}).get(s) is None else f"{r['macs_g'][s]:.2f}" for s in sizes),
                 *(ms(r.get("latency", {}).get(s, {}).get(v)) for s, v in columns),
                 pct((r.get("estimate") or {}).get("miou")), training(r)]
        rows.append(cells)
    return table(header, rows, "ll" + "r" * (len(header) - 2))


def training(entry: Dict[str, Any]) -> str:
    """Mean training seconds and images/s over the seeds (trainings sharing a GPU each count their own)."""
    seeds = entry.get("seeds", {}).values()
    seconds = [s["train_seconds"] for s in seeds if s.get("train_seconds") is not None]
    speed = [s["images_per_s"] for s in seeds if s.get("images_per_s") is not None]
    return (f"{fmean(seconds):.0f}" if seconds else "-") + (f" / {fmean(speed):.0f}" if speed else "")


def class_table(results: Results) -> List[str]:
    """IoU per class (mean over seeds) of every network."""
    names = ordered(results)
    rows = []
    for c in results.get("classes") or []:
        cells = []
        for n in names:
            values = [s["iou"][c] for s in results["networks"][n].get("seeds", {}).values() if c in s.get("iou", {})]
            cells.append(f"{100 * sum(values) / len(values):.1f}" if values else "-")
        rows.append([c, *cells])
    return table(["class", *names], rows)


def best_searched(results: Results) -> Optional[str]:
    """The most accurate searched network (None before the evaluation)."""
    searched = [n for n in ordered(results) if results["networks"][n].get("kind") == "searched"]
    return searched[0] if searched else None


def verdict(results: Results, reference: str) -> List[str]:
    """Whether the best searched network beats the reference baseline in accuracy and latency."""
    best = best_searched(results)
    networks = results.get("networks", {})
    if best is None or reference not in networks:
        return ["(no searched network or no reference among the retrained networks)"]
    b, r = networks[best], networks[reference]
    diff = 100 * (b["miou_mean"] - r["miou_mean"])
    rows, faster = [], []
    for size, variant in latency_columns(results):
        mine, theirs = b.get("latency", {}).get(size, {}).get(variant), r.get("latency", {}).get(size, {}).get(variant)
        ratio = mine / theirs if mine is not None and theirs else None
        faster.append(ratio is not None and ratio < 1)
        rows.append([variant, size, ms(mine), ms(theirs), "-" if ratio is None else f"{ratio:.2f}x"])
    n_seeds = len(b.get("seeds", {}))
    lines = [f"Best searched network **{best}**: mean val mIoU {pct(b['miou_mean'])} over {n_seeds} seed(s) against "
             f"**{reference}**'s {pct(r['miou_mean'])}: **{diff:+.2f} points**.", "",
             *table(["variant", "size", f"{best} (ms)", f"{reference} (ms)", "latency ratio"], rows, "llrrr"), ""]
    if diff > 0 and faster and all(faster):
        lines.append(f"{best} is more accurate than {reference} and faster in every variant and size measured.")
    else:
        slower = [f"{v} at {s}" for (s, v), f in zip(latency_columns(results), faster) if not f]
        lines.append(f"{best} does not beat {reference} on both counts: "
                     + ("it is less accurate" if diff <= 0 else "it is more accurate")
                     + (f"; not faster in {', '.join(slower)}" if slower else "; faster everywhere measured") + ".")
    return lines


def search_section(results: Results) -> List[str]:
    """The supernet's validation and the search's size, cap and hypervolume."""
    s, supernet = results.get("search"), results.get("supernet") or {}
    if not s:
        return []
    hv = [h for h in s.get("hypervolume", []) if h is not None]
    val, parts = supernet.get("val", {}), []
    if "val/mIoU_largest" in val and "val/mIoU_smallest" in val:
        parts.append(f"val mIoU of its largest / smallest sub-network {pct(val['val/mIoU_largest'])} / "
                     f"{pct(val['val/mIoU_smallest'])} % at the end of training")
    if supernet.get("images_per_s"):
        parts.append(f"{supernet['images_per_s']:.1f} training images/s")
    lines = [f"Supernet: {', '.join(parts)}.", ""] if parts else []
    return lines + [f"{s['evaluated']} candidates evaluated through the supernet, {s['feasible']} feasible, a front of "
            f"{s['front']}" + (f"; hypervolume {hv[0]:.3f} -> {hv[-1]:.3f} over the generations." if hv else "."),
            "", "![search candidates and retrained networks](pareto.png)"]


def rank_section(results: Results) -> List[str]:
    """The rank-correlation study: statistics and one row per architecture."""
    rank = results.get("rank")
    if not rank:
        return ["(the rank stage has not run)"]
    st, rows = statistics_of(rank), rank["architectures"]
    seeds = [str(s) for s in rank["seeds"]]
    level = f"{100 * st['confidence']:.0f} %"
    fewer = (f" (fewer than the {rank['requested']} asked: the journal held no more feasible candidates)"
             if st["n"] < rank["requested"] else "")
    lines = [f"{st['n']} architectures{fewer} spanning the search's latency range "
             f"({sum(r['source'] == 'front' for r in rows)} from the front, "
             f"{sum(r['source'] == 'random' for r in rows)} random feasible candidate(s)), each retrained with seeds "
             f"{', '.join(seeds)} under the shared recipe; outcome = mean mIoU over the seeds.", "",
             f"- Kendall tau = **{st['kendall_tau']:.3f}** ({level} bootstrap interval "
             f"[{st['kendall_ci'][0]:.3f}, {st['kendall_ci'][1]:.3f}], p = {st['kendall_p']:.3g})",
             f"- Spearman rho = **{st['spearman_rho']:.3f}** ({level} interval "
             f"[{st['spearman_ci'][0]:.3f}, {st['spearman_ci'][1]:.3f}], p = {st['spearman_p']:.3g})",
             f"- {st['bootstrap']} bootstrap resamples of the architectures", ""]
    body = [[r["name"], r["hash"], r["source"], ms(r["estimate"].get("latency_ms")), pct(r["estimate"].get("miou")),
             *(pct(r["seeds"].get(s, {}).get("miou")) for s in seeds), pct(r["miou_mean"])] for r in rows]
    lines += table(["network", "architecture", "pick", "latency est. (ms)", "supernet mIoU",
                    *(f"seed {s}" for s in seeds), "retrained mean"], body, "lll" + "r" * (3 + len(seeds)))
    return [*lines, "", "![supernet estimate against retrained mIoU](rank.png)"]


def zoo_section(results: Results) -> List[str]:
    """The model-zoo files written."""
    zoo = results.get("zoo")
    if not zoo:
        return ["(the zoo stage has not run)"]
    rows = [[name, e["role"], e["seed"], pct(e["miou"]), e["weights"], f"`{e['checkpoint']}`",
             f"`{e['architecture']}`" if e.get("architecture") else "-"] for name, e in zoo["entries"].items()]
    return [f"In `{zoo['folder']}` (each with a `NAME.json` of metadata):", "",
            *table(["network", "role", "seed", "mIoU", "weights", "checkpoint", "architecture"],
                   [[str(c) for c in r] for r in rows], "llrrlll")]


def cost_section(manifest: Dict[str, Any]) -> List[str]:
    """Seconds and GPU-minutes per stage."""
    stages = manifest.get("stages", {})
    rows, total = [], 0.0
    for name in STAGES:
        if name == "report" or name not in stages:
            continue
        s = stages[name]
        gpus = sorted({a.get("gpus", 0) for a in s.get("attempts", [])})
        rows.append([name, s["status"], f"{s['seconds'] / 60:.1f}", ",".join(map(str, gpus)) or "0",
                     f"{s['gpu_minutes']:.1f}", str(len(s.get("attempts", [])))])
        total += s["gpu_minutes"]
    return [*table(["stage", "status", "wall (min)", "GPUs", "GPU-minutes", "attempts"], rows, "llrrrr"), "",
            f"Total: {total:.1f} GPU-minutes."]


def commands_section(manifest: Dict[str, Any]) -> List[str]:
    """Every command the stages ran, per stage."""
    stages = manifest.get("stages", {})
    runs = []
    for name in STAGES:
        if name == "report":
            continue
        for attempt in stages.get(name, {}).get("attempts", []):
            line = " ".join(["hyctas", "pipeline", *attempt.get("argv", [])])
            if attempt.get("argv") and line not in runs:
                runs.append(line)
    lines = ["The pipeline, as invoked:", "", "```bash", *runs, "```", ""]
    for name in STAGES:
        commands = stages.get(name, {}).get("commands", [])
        if not commands or name == "report":
            continue
        block = ["```bash", *commands, "```"]
        if len(commands) > 2:
            block = [f"<details><summary>{name}: {len(commands)} commands</summary>", "", *block, "", "</details>"]
        else:
            block = [f"{name}:", "", *block]
        lines += [*block, ""]
    return lines


# ---------------------------------------------------------------------------------------------- plots
def _figure() -> tuple:
    fig = Figure(figsize=(7, 5), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def plot_pareto(path: Path, results: Results, candidates: Sequence[Dict[str, Any]]) -> None:
    """Supernet estimates of every feasible candidate (grey, front ringed) and the retrained networks (mean mIoU,
    spread over seeds) at their measured latency in the search's variant and size."""
    search = results.get("search", {})
    size = "x".join(map(str, search.get("size", []))) if search else None
    variant = search.get("variant")
    fig, ax = _figure()
    feasible = [c for c in candidates if c["feasible"] and c["measurements"].get("miou") is not None]
    ax.scatter([c["measurements"]["latency_ms"] for c in feasible], [100 * c["measurements"]["miou"] for c in feasible],
               s=10, c="0.75", label="candidates (supernet mIoU)")
    front = sorted((c["measurements"]["latency_ms"], 100 * c["measurements"]["miou"]) for c in feasible if c["front"])
    if front:
        ax.scatter(*zip(*front), s=30, facecolors="none", edgecolors="0.35", label="search front")
    for name in ordered(results):
        r = results["networks"][name]
        x = r.get("latency", {}).get(size, {}).get(variant)
        if x is None:
            continue
        mious = [100 * s["miou"] for s in r.get("seeds", {}).values()]
        y = 100 * r["miou_mean"]
        searched = r.get("kind") == "searched"
        colour = "crimson" if searched else "navy"
        ax.errorbar([x], [y], yerr=[[y - min(mious)], [max(mious) - y]], fmt="*" if searched else "s", ms=9,
                    c=colour, zorder=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
        estimate = r.get("estimate") or {}
        if searched and estimate.get("miou") is not None:
            ax.plot([estimate["latency_ms"], x], [100 * estimate["miou"], y], c=colour, lw=0.6, alpha=0.5)
    ax.scatter([], [], marker="*", c="crimson", label="searched, retrained (mean, seed range)")
    ax.scatter([], [], marker="s", c="navy", label="baselines, retrained")
    ax.set_xlabel(f"latency at {size}, batch 1, {variant} (ms)")
    ax.set_ylabel("mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path, bbox_inches="tight")


def plot_rank(path: Path, results: Results) -> None:
    """Supernet estimate against retrained mIoU (mean and seed range) for the rank study."""
    rank = results.get("rank")
    fig, ax = _figure()
    for source, marker, colour in (("front", "o", "crimson"), ("random", "^", "teal")):
        rows = [r for r in (rank or {}).get("architectures", []) if r["source"] == source]
        for r in rows:
            mious = [100 * s["miou"] for s in r["seeds"].values()]
            y = 100 * r["miou_mean"]
            ax.errorbar([100 * r["estimate"]["miou"]], [y], yerr=[[y - min(mious)], [max(mious) - y]], fmt=marker,
                        c=colour, ms=6)
        ax.scatter([], [], marker=marker, c=colour, label=f"{source} pick")
    if rank:
        st = statistics_of(rank)
        ax.set_title(f"Kendall tau {st['kendall_tau']:.2f} [{st['kendall_ci'][0]:.2f}, {st['kendall_ci'][1]:.2f}], "
                     f"Spearman rho {st['spearman_rho']:.2f}, n = {st['n']}", fontsize=9)
    ax.set_xlabel("supernet mIoU estimate (%)")
    ax.set_ylabel("retrained mIoU, mean over seeds (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, bbox_inches="tight")


def write_report(run: Path, title: str, manifest: Dict[str, Any], results: Results,
                 candidates: Sequence[Dict[str, Any]]) -> List[Path]:
    """Write ``REPORT.md``, ``pareto.png`` and ``rank.png`` into ``run``; returns their paths.

    Args:
        run: the run folder (the report is written there).
        title: the report's heading.
        manifest: ``manifest.json``'s content (config, stages, commands).
        results: ``results.json``'s content.
        candidates: ``candidates.json``'s content (the search journal without architectures).
    """
    run = Path(run)
    reference = manifest.get("config", {}).get("retrain", {}).get("reference", "")
    plot_pareto(run / "pareto.png", results, candidates)
    plot_rank(run / "rank.png", results)
    text = [f"# {title}", "", *setup(results, manifest), "",
            "## Verdict", "", *verdict(results, reference), "",
            "## Networks", "", "mIoU in %, latency in ms at batch 1; `supernet mIoU` is the search's estimate.", "",
            *networks_table(results), "",
            "Per-class IoU (%, mean over seeds):", "", *class_table(results), "",
            "## Search", "", *search_section(results), "",
            "## Does the supernet rank?", "", *rank_section(results), "",
            "## Model zoo", "", *zoo_section(results), "",
            "## Stages and cost", "", *cost_section(manifest), "",
            "## Commands", "", *commands_section(manifest)]
    path = run / "REPORT.md"
    atomic_write_text(path, "\n".join(text).rstrip() + "\n")
    return [path, run / "pareto.png", run / "rank.png"]
