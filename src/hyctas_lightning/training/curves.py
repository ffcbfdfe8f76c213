"""Metrics as a run logged them, read back from its folder: TensorBoard event files (the configs' default logger)
and ``metrics.csv`` (Lightning's ``CSVLogger``). The one reader of training logs: notebooks, reports, the pipeline
and the benchmarks take their numbers from here, never from printed lines."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union


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
    return {tag: [(e.step, float(e.value)) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _csv(path: Path) -> Dict[str, List[Tuple[int, float]]]:
    points: Dict[str, List[Tuple[int, float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for tag, value in row.items():
                if tag != "step" and value not in (None, ""):
                    points.setdefault(tag, []).append((step, float(value)))
    return points


def read_curves(run: Union[str, Path], recursive: bool = True) -> Dict[str, Curve]:
    """Every scalar logged in ``run``, by tag in the order they were first logged (``epoch`` as Lightning logs it,
    like any other).

    Points of all files are merged per tag and ordered by step; a step logged twice (a resumed run, a repeated
    ``hyctas test``) keeps the later file's value.

    Args:
        run: a run folder (``trainer.default_root_dir``) or a single event / ``metrics.csv`` file.
        recursive: also read the folders below (``version_*`` folders); False reads only the files directly in
            ``run``, e.g. a training's own logs and not those of the evaluation in its ``eval/`` folder.
    """
    run = Path(run)
    pattern = run.rglob if recursive else run.glob
    files = [run] if run.is_file() else sorted([*pattern("events.out.tfevents.*"), *pattern("metrics.csv")],
                                               key=lambda p: p.stat().st_mtime)
    merged: Dict[str, Dict[int, float]] = {}
    for path in files:
        for tag, points in (_csv(path) if path.suffix == ".csv" else _tensorboard(path)).items():
            merged.setdefault(tag, {}).update(points)
    if not merged:
        raise FileNotFoundError(f"{run}: no logged metrics: no TensorBoard event files and no metrics.csv with "
                                f"scalars{'' if recursive else ' directly in it'} (the run folder of `hyctas fit` or "
                                f"`hyctas test` with a TensorBoardLogger or CSVLogger writing into "
                                f"trainer.default_root_dir)")
    return {tag: Curve(tuple(sorted(points)), tuple(points[s] for s in sorted(points)))
            for tag, points in merged.items()}


def last_value(curves: Dict[str, Curve], names: Sequence[str]) -> Optional[float]:
    """The last logged value (not NaN) of the first of ``names`` that was logged; None if none was.

    Args:
        curves: what ``read_curves`` returned.
        names: tags in order of preference (e.g. the throughput metrics of several Lightning versions).
    """
    for name in names:
        values = [v for v in curves[name].values if not math.isnan(v)] if name in curves else []
        if values:
            return values[-1]
    return None


__all__ = ["Curve", "last_value", "read_curves"]
