"""How well the supernet ranks, read back from a study's files for notebooks and reports: its mIoU estimates
against the same architectures trained alone, with Kendall's tau (paper section 4.5 reports 0.51).

Two layouts are read:

- a ranking study's ``report.json`` (``benchmarks/supernet_ranking.py``): per supernet variant, each panel member's
  ``supernet_miou`` and ``standalone_miou``; the random members are compared (the largest and smallest
  sub-networks would inflate tau, as the study's own summary leaves them out);
- a ``hyctas pipeline`` run folder: its ``results.json``, where the ``rank`` stage's architectures and the
  retrained searched networks carry the search's estimate beside the mIoU retraining reached (mean over seeds).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hyctas_lightning.fileio import read_json
from hyctas_lightning.viz import Table

from .correlation import kendall_tau


@dataclass(frozen=True)
class RankPair:
    """One architecture: the supernet's estimate and the mIoU it reached trained alone.

    Args:
        name: the architecture's name in the study.
        estimate: supernet mIoU (BN recalibrated), in [0, 1].
        retrained: mIoU of the architecture trained alone, in [0, 1].
        group: which supernet (variant) gave the estimate.
    """

    name: str
    estimate: float
    retrained: float
    group: str = ""


@dataclass
class RankStudy:
    """Paired estimates and outcomes, grouped by supernet.

    Args:
        pairs: one per architecture and supernet.
        source: the file or folder they were read from.
        groups: the supernets in report order; empty takes them from ``pairs`` in order of appearance.
    """

    pairs: List[RankPair]
    source: Path
    groups: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.groups = self.groups or list(dict.fromkeys(p.group for p in self.pairs))

    def of(self, group: Optional[str] = None) -> List[RankPair]:
        return [p for p in self.pairs if group is None or p.group == group]

    def tau(self, group: Optional[str] = None) -> float:
        pairs = self.of(group)
        return kendall_tau([p.estimate for p in pairs], [p.retrained for p in pairs])

    def table(self) -> Table:
        return Table(["group", "name", "estimate", "retrained"],
                     [[p.group, p.name, p.estimate, p.retrained] for p in self.pairs],
                     title=f"supernet estimate vs retrained mIoU ({self.source.name})")

    def tau_table(self) -> Table:
        return Table(["group", "pairs", "kendall_tau"], [[g, len(self.of(g)), self.tau(g)] for g in self.groups],
                     title="Kendall tau per supernet")

    def plot(self) -> Figure:
        """Retrained mIoU against the supernet's estimate, one colour per supernet, tau in the legend."""
        fig = Figure(figsize=(6, 4.5), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for group in self.groups:
            pairs = self.of(group)
            label = f"{group + ': ' if group else ''}tau = {self.tau(group):.2f} over {len(pairs)}"
            ax.scatter([100 * p.estimate for p in pairs], [100 * p.retrained for p in pairs], s=30, label=label)
        ax.set_xlabel("supernet estimate, mIoU (%)")
        ax.set_ylabel("trained alone, mIoU (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return fig


def _from_report(path: Path) -> List[RankPair]:
    report = read_json(path)
    pairs = []
    for variant, entry in report.get("variants", {}).items():
        for name, member in entry.get("members", {}).items():
            if name.startswith("random") and member.get("supernet_miou") is not None \
                    and member.get("standalone_miou") is not None:
                pairs.append(RankPair(name, float(member["supernet_miou"]), float(member["standalone_miou"]), variant))
    return pairs


def _from_pipeline(path: Path) -> List[RankPair]:
    """The rank stage's architectures, then the retrained searched networks it did not already hold."""
    results = read_json(path)
    group = path.parent.name
    rows = [(r["name"], r["hash"], r.get("estimate"), r.get("miou_mean"))
            for r in (results.get("rank") or {}).get("architectures", [])]
    rows += [(name, n.get("key"), n.get("estimate"), n.get("miou_mean"))
             for name, n in (results.get("networks") or {}).items() if n.get("kind") == "searched"]
    pairs, seen = [], set()
    for name, key, estimate, retrained in rows:
        if key not in seen and (estimate or {}).get("miou") is not None and retrained is not None:
            seen.add(key)
            pairs.append(RankPair(name, float(estimate["miou"]), float(retrained), group))
    return pairs


def read_rank_study(source: Union[str, Path]) -> RankStudy:
    """Read a rank-correlation study (see the module doc for the layouts).

    Args:
        source: a ranking study's ``report.json`` or its folder, or a ``hyctas pipeline`` run folder.
    """
    source = Path(source)
    report = source if source.is_file() else source / "report.json"
    if report.is_file():
        pairs = _from_report(report)
    elif (source / "results.json").is_file():
        pairs = _from_pipeline(source / "results.json")
    else:
        raise FileNotFoundError(f"{source}: no rank-correlation study here; expected a ranking study's report.json "
                                "(benchmarks/supernet_ranking.py) or a `hyctas pipeline` run folder with "
                                "results.json")
    if not pairs:
        raise ValueError(f"{source}: the study pairs no supernet estimate with a retrained result yet")
    return RankStudy(pairs, source)


__all__ = ["RankPair", "RankStudy", "read_rank_study"]
