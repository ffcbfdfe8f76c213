"""A search on a W&B dashboard, live: every generation as it completes (hypervolume, front size, its new candidates
and the Pareto scatter of everything evaluated so far), and at the end the front with a drawing of each member and
the top-k architecture files as an artifact. ``wandb`` is imported only when a ``WandbLogger`` is in use; the engine
knows nothing of it (this is one of its ``on_generation`` hooks)."""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, List, Optional, Sequence

from hyctas_lightning.viz import draw_architecture

from .engine import SearchRun
from .fronts import Individual, pareto_front
from .journal import Candidate
from .objectives import Objective


def candidate_rows(candidates: Sequence[Candidate], objectives: Sequence[Objective],
                   on_front: Optional[set] = None) -> tuple[List[str], List[list]]:
    """Columns and rows of a candidates table: identity, objectives (their measurements), whether on the front."""
    on_front = on_front or set()
    names = [o.name for o in objectives]
    columns = ["hash", "generation", "branches", "feasible", "on_front", *names, "arch"]
    rows = [[c.hash, c.generation, c.arch.num_branches, c.feasible, c.hash in on_front,
             *(c.measurements.get(o.key or o.name) for o in objectives), c.arch.to_json()] for c in candidates]
    return columns, rows


class WandbSearchLog:
    """Generation hook logging a search to a W&B run; ``finish`` logs the final front and the top-k files.

    Every generation is one history row: ``search/generation``, ``search/hypervolume``, ``search/front_size``,
    ``search/evaluations``, ``search/feasible``, ``search/new_candidates`` (a table of the candidates first evaluated
    in it) and ``search/pareto`` (a scatter of the first two objectives over every feasible candidate so far: the
    panel grows as the search runs). ``search/*`` is plotted against ``search/generation``.

    Args:
        run: the W&B run (``WandbLogger.experiment``).
        objectives: the search's objectives; the scatter plots the second (x) against the first (y).
    """

    def __init__(self, run: Any, objectives: Sequence[Objective]) -> None:
        self.run = run
        self.objectives = list(objectives)
        run.define_metric("search/generation")
        run.define_metric("search/*", step_metric="search/generation")

    def _table(self, candidates: Sequence[Candidate], on_front: Optional[set] = None) -> Any:
        import wandb

        columns, rows = candidate_rows(candidates, self.objectives, on_front)
        return wandb.Table(columns=columns, data=rows)

    def __call__(self, search: SearchRun, row: dict) -> None:
        import wandb

        generation = row["generation"]
        done = [c for c in search.journal.candidates() if c.generation <= generation]
        on_front = {ind.candidate.hash for ind in pareto_front(done, self.objectives)}
        x, y = self.objectives[1].name, self.objectives[0].name
        scatter = self._table([c for c in done if c.feasible], on_front)
        self.run.log({"search/generation": generation, "search/hypervolume": row["hypervolume"],
                      "search/front_size": row["front"], "search/evaluations": row["evaluations"],
                      "search/feasible": row["feasible"],
                      "search/new_candidates": self._table(search.candidates_of(generation), on_front),
                      "search/pareto": wandb.plot.scatter(scatter, x, y,
                                                          title=f"{y} against {x}, up to generation {generation}")})

    def finish(self, candidates: Sequence[Candidate], front: Sequence[Individual], out_dir: Path) -> None:
        """The front as a table with a drawing of each member, every candidate, the Pareto plot, and the top-k
        architecture files (with ``pareto.json`` and ``best.json``) as an artifact of type ``architectures``."""
        import wandb

        out_dir = Path(out_dir)
        names = [o.name for o in self.objectives]
        columns = ["hash", "branches", "generation", *names, "crowding_distance", "drawing", "arch"]
        rows = [[ind.candidate.hash, ind.candidate.arch.num_branches, ind.candidate.generation, *ind.fitness.values,
                 _finite(ind.fitness.crowding_dist), wandb.Image(_png(ind.candidate)), ind.candidate.arch.to_json()]
                for ind in sorted(front, key=lambda i: -i.fitness.wvalues[0])]
        media = {"search/front": wandb.Table(columns=columns, data=rows),
                 "search/candidates": self._table(candidates, {ind.candidate.hash for ind in front})}
        if (out_dir / "pareto.png").is_file():
            media["search/pareto_png"] = wandb.Image(str(out_dir / "pareto.png"))
        self.run.log(media)
        artifact = wandb.Artifact(re.sub(r"[^\w.-]", "_", f"search-{out_dir.name}-topk"), type="architectures",
                                  description="top-k of the front (topk/*.json), the whole front and the best")
        for path in sorted((out_dir / "topk").glob("*.json")):
            artifact.add_file(str(path), name=f"topk/{path.name}")
        for name in ("pareto.json", "best.json"):
            if (out_dir / name).is_file():
                artifact.add_file(str(out_dir / name), name=name)
        self.run.log_artifact(artifact)


def _finite(value: float) -> Optional[float]:
    return value if value == value and abs(value) != float("inf") else None


def _png(candidate: Candidate) -> Any:
    """The drawing of a candidate as a PIL image (rendered here, so no pyplot state is involved)."""
    from PIL import Image

    buffer = io.BytesIO()
    draw_architecture(candidate.arch).savefig(buffer, format="png", dpi=80)
    buffer.seek(0)
    return Image.open(buffer)


def search_dashboard(loggers: Any, objectives: Sequence[Objective]) -> Optional[WandbSearchLog]:
    """A :class:`WandbSearchLog` on the run of the first ``WandbLogger`` among ``loggers``, else None."""
    from hyctas_lightning.training.dashboard import wandb_run  # the training package only when logging

    run = wandb_run(loggers)
    return WandbSearchLog(run, objectives) if run is not None else None
