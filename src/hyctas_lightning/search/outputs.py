"""What a search leaves in its run folder: pareto.json, topk/*.json, best.json, pareto.png, history.json (W&B:
``dashboard.py``)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hyctas_lightning.fileio import write_json

from .fronts import Individual, objective_values, pareto_front, top_k
from .journal import Candidate
from .objectives import Objective

MARKERS = {1: "o", 2: "s", 3: "^"}


def write_outputs(out_dir: Path, candidates: Sequence[Candidate], objectives: Sequence[Objective], k: int,
                  history: Sequence[dict]) -> List[Individual]:
    """Write every artefact of a finished (or stopped) search; returns the front."""
    out_dir = Path(out_dir)
    # best first objective first: the same file whatever order the journal holds the candidates in (a search
    # spread over processes journals them as they complete)
    front = sorted(pareto_front(candidates, objectives), key=lambda ind: (-ind.fitness.wvalues[0], ind.candidate.hash))
    write_json(out_dir / "pareto.json", [_entry(ind, objectives) for ind in front])
    topk_dir = out_dir / "topk"
    topk_dir.mkdir(exist_ok=True)
    for old in topk_dir.glob("*.json"):
        old.unlink()
    for rank, ind in enumerate(top_k(front, k), start=1):
        ind.candidate.arch.save(topk_dir / f"top{rank:02d}_{ind.candidate.hash}.json")
    if front:  # the front's best on the first objective (mIoU by default), the usual pick to retrain
        max(front, key=lambda ind: ind.fitness.wvalues[0]).candidate.arch.save(out_dir / "best.json")
    write_json(out_dir / "history.json", list(history))
    plot_pareto(candidates, front, objectives, out_dir / "pareto.png")
    return front


def _entry(ind: Individual, objectives: Sequence[Objective]) -> dict:
    c = ind.candidate
    return {"hash": c.hash, "objectives": dict(zip([o.name for o in objectives], ind.fitness.values)),
            "measurements": c.measurements, "generation": c.generation, "branches": c.arch.num_branches,
            "crowding_distance": ind.fitness.crowding_dist, "arch": c.arch.to_dict()}


def plot_pareto(candidates: Sequence[Candidate], front: Sequence[Individual], objectives: Sequence[Objective],
                path: Optional[Path] = None, title: str = "search") -> Figure:
    """All feasible candidates on the first two objectives, coloured by generation, marker by branch count,
    the front drawn as a step line (the paper's fig. 3)."""
    x_obj, y_obj = objectives[1], objectives[0]
    fig = Figure(figsize=(7, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    feasible = [c for c in candidates if c.feasible]
    last = max((c.generation for c in feasible), default=0) or 1
    for branches, marker in MARKERS.items():
        group = [c for c in feasible if c.arch.num_branches == branches]
        if group:
            values = [objective_values(c, objectives) for c in group]
            sc = ax.scatter([v[1] for v in values], [v[0] for v in values], c=[c.generation for c in group],
                            cmap="viridis", vmin=0, vmax=last, marker=marker, s=28, alpha=0.8, edgecolors="none",
                            label=f"{branches} branch{'es' if branches > 1 else ''}")
    if front:
        pts = sorted((ind.fitness.values[1], ind.fitness.values[0]) for ind in front)
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post" if y_obj.direction > 0 else "pre",
                color="crimson", lw=1.5, label="non-dominated front")
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], facecolors="none", edgecolors="crimson", s=60)
    if feasible:
        fig.colorbar(sc, ax=ax, label="generation")
    xs = [objective_values(c, objectives)[1] for c in feasible]
    if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(x_obj.label)
    ax.set_ylabel(y_obj.label)
    ax.set_title(f"{title}: {len(feasible)} feasible of {len(candidates)} evaluated, front {len(front)}")
    ax.grid(alpha=0.3)
    if feasible:
        ax.legend(loc="best", fontsize=8)
    if path is not None:
        fig.savefig(path, bbox_inches="tight")
    return fig


def front_table(front: Sequence[Individual], objectives: Sequence[Objective]) -> str:
    """The front as aligned text, best first objective first."""
    names = [o.name for o in objectives]
    header = f"{'hash':<16}  {'br':>2}  {'gen':>3}  " + "  ".join(f"{n:>12}" for n in names)
    rows = [header, "-" * len(header)]
    for ind in sorted(front, key=lambda i: -i.fitness.wvalues[0]):
        c = ind.candidate
        rows.append(f"{c.hash:<16}  {c.arch.num_branches:>2}  {c.generation:>3}  "
                    + "  ".join(f"{v:>12.4g}" for v in ind.fitness.values))
    return "\n".join(rows)

