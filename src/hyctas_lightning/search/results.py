"""A search run folder read back for notebooks and reports: its settings, every candidate, the front, the
hypervolume by generation and the top-k picks. Reading never writes, so it is safe on a search that is still
running (an unfinished last journal line is skipped, and the history is recomputed from the journal until the
search writes ``history.json``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hyctas_lightning.fileio import read_json
from hyctas_lightning.search_space import SearchSpace
from hyctas_lightning.viz import Table

from .config import SearchConfig
from .fronts import Individual, history_row, pareto_front, top_k
from .journal import Candidate, read_journal
from .objectives import Objective
from .outputs import plot_pareto


@dataclass
class SearchRunFolder:
    """What one ``hyctas search`` (or ``SearchCallback``) run folder holds.

    Args:
        folder: the run folder.
        config: the search settings it ran with (``config.json``).
        space: the search space, when recorded.
        candidates: every evaluated candidate (``candidates.jsonl``).
        history: one row per finished generation (``history.json``, or recomputed from the journal).
    """

    folder: Path
    config: SearchConfig
    space: Optional[SearchSpace]
    candidates: List[Candidate]
    history: List[dict] = field(default_factory=list)

    @property
    def objectives(self) -> List[Objective]:
        return self.config.objective_list()

    @property
    def front(self) -> List[Individual]:
        """The non-dominated feasible candidates (with crowding distances), best first objective first."""
        return sorted(pareto_front(self.candidates, self.objectives), key=lambda i: -i.fitness.wvalues[0])

    def picks(self, k: Optional[int] = None) -> List[Candidate]:
        """The ``k`` (default: the run's ``top_k``) most isolated front members, as ``topk/`` holds them."""
        return [ind.candidate for ind in top_k(self.front, k or self.config.top_k)]

    def candidate(self, arch_hash: str) -> Candidate:
        for c in self.candidates:
            if c.hash == arch_hash:
                return c
        raise KeyError(f"{self.folder}: no candidate {arch_hash} among {len(self.candidates)} evaluated")

    def front_table(self) -> Table:
        """The front: identity, objectives, the other measurements and the crowding distance."""
        names = [o.name for o in self.objectives]
        extra = [k for k in ("miou", "latency_ms", "macs_g", "params_m") if k not in names]
        rows = [[ind.candidate.hash, ind.candidate.arch.num_branches, ind.candidate.generation, *ind.fitness.values,
                 *(ind.candidate.measurements.get(k) for k in extra), ind.fitness.crowding_dist]
                for ind in self.front]
        return Table(["hash", "branches", "generation", *names, *extra, "crowding_distance"], rows,
                     title=f"Pareto front of {self.folder.name}")

    def history_table(self) -> Table:
        keys = ["generation", "evaluations", "feasible", "front", "hypervolume"]
        return Table(keys, [[row[k] for k in keys] for row in self.history],
                     title=f"hypervolume by generation of {self.folder.name}")

    def plot(self) -> Figure:
        """Every feasible candidate on the first two objectives, coloured by generation, the front drawn."""
        return plot_pareto(self.candidates, self.front, self.objectives, title=self.folder.name)

    def plot_hypervolume(self) -> Figure:
        """Hypervolume of the front against the generation, with the front size on a second axis."""
        fig = Figure(figsize=(6, 3.2), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        generations = [row["generation"] for row in self.history]
        ax.plot(generations, [row["hypervolume"] for row in self.history], "o-", color="crimson")
        ax.set_xlabel("generation")
        ax.set_ylabel("hypervolume", color="crimson")
        sizes = ax.twinx()
        sizes.plot(generations, [row["front"] for row in self.history], "s--", color="0.5", lw=1, ms=4)
        sizes.set_ylabel("front size", color="0.4")
        for axis in (ax.xaxis, sizes.yaxis):
            axis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        reference = ", ".join(f"{v:.4g}" for v in self.history[-1]["reference"]) if self.history else ""
        ax.set_title(f"reference point ({reference}) in {', '.join(self.config.objectives)}", fontsize=9)
        return fig


def _config(settings: dict) -> SearchConfig:
    """A SearchConfig from a run's recorded settings; settings this version does not know are left out."""
    known = {f.name for f in dataclasses.fields(SearchConfig)}
    return SearchConfig(**{k: v for k, v in settings.items() if k in known})


def read_search_run(folder: Union[str, Path]) -> SearchRunFolder:
    """Read a search run folder (``candidates.jsonl``, ``config.json``, ``history.json`` when finished).

    Args:
        folder: the ``--out`` folder of ``hyctas search`` (or ``search/`` of a run with a ``SearchCallback``).
    """
    folder = Path(folder)
    journal, settings = folder / "candidates.jsonl", folder / "config.json"
    if not journal.is_file() or not settings.is_file():
        raise FileNotFoundError(f"{folder} is not a search run folder: it needs candidates.jsonl and config.json "
                                "(the --out folder of `hyctas search`)")
    recorded = read_json(settings)
    config = _config(recorded.get("search", {}))
    space = SearchSpace.from_dict(recorded["space"]) if recorded.get("space") else None
    run = SearchRunFolder(folder, config, space, read_journal(journal))
    generations = sorted({c.generation for c in run.candidates})
    history_file = folder / "history.json"
    history = read_json(history_file, [])
    if not history or history[-1]["generation"] < max(generations, default=-1):  # running: the journal is ahead
        history = [history_row(run.candidates, g, run.objectives, config) for g in generations]
    run.history = history
    return run


__all__ = ["SearchRunFolder", "read_journal", "read_search_run"]
