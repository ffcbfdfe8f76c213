"""Training curves read back from a run folder's logs: TensorBoard event files (the configs' default logger) and
``metrics.csv`` (Lightning's ``CSVLogger``), for notebooks and reports."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple, Union


@dataclass(frozen=True)
class Curve:
    """One logged scalar over training.

    Args:
        steps: the global step of each value, increasing.
        values: the logged values.
    """

    steps: Tuple[int, ...]
    values: Tuple[float, ...]

    @property
    def last(self) -> float:
        return self.values[-1]


def _tensorboard(path: Path) -> Dict[str, List[Tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _csv(path: Path) -> Dict[str, List[Tuple[int, float]]]:
    points: Dict[str, List[Tuple[int, float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for tag, value in row.items():
                if tag != "step" and value not in (None, ""):
                    points.setdefault(tag, []).append((step, float(value)))
    return points


def read_curves(run: Union[str, Path]) -> Dict[str, Curve]:
    """Every scalar logged under ``run`` (searched recursively: ``version_*`` folders, resumed runs), by tag.

    Points of all files are merged per tag and ordered by step; a step logged twice (a resumed run) keeps the
    later file's value.

    Args:
        run: a run folder (``trainer.default_root_dir``) or a single event / ``metrics.csv`` file.
    """
    run = Path(run)
    files = [run] if run.is_file() else sorted(
        [*run.rglob("events.out.tfevents.*"), *run.rglob("metrics.csv")], key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"{run}: no TensorBoard event files and no metrics.csv (a run folder of `hyctas fit` "
                                "with a TensorBoardLogger or CSVLogger)")
    merged: Dict[str, Dict[int, float]] = {}
    for path in files:
        for tag, points in (_csv(path) if path.suffix == ".csv" else _tensorboard(path)).items():
            merged.setdefault(tag, {}).update(points)
    return {tag: Curve(tuple(sorted(points)), tuple(points[s] for s in sorted(points)))
            for tag, points in sorted(merged.items())}


__all__ = ["Curve", "read_curves"]
