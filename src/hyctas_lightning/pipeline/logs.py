"""Metrics as the runs logged them: the TensorBoard event files and ``metrics.csv`` (CSVLogger) a ``hyctas fit`` /
``hyctas test`` left in its folder. The pipeline reads results from here, never from printed lines."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

Scalars = Dict[str, List[Tuple[int, float]]]


def _tensorboard(path: Path) -> Scalars:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, float(e.value)) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _csv(path: Path) -> Scalars:
    scalars: Scalars = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in (None, ""):
                    scalars.setdefault(key, []).append((step, float(value)))
    return scalars


def read_scalars(folder: Path) -> Scalars:
    """Every scalar logged directly in ``folder`` (not its sub-folders), oldest file first, so a resumed run's
    later values come last."""
    folder = Path(folder)
    files = sorted([*folder.glob("events.out.tfevents.*"), *folder.glob("metrics.csv")],
                   key=lambda p: p.stat().st_mtime)
    scalars: Scalars = {}
    for path in files:
        for tag, values in (_csv(path) if path.suffix == ".csv" else _tensorboard(path)).items():
            scalars.setdefault(tag, []).extend(values)
    return scalars


def last_value(scalars: Scalars, names: Sequence[str]) -> Optional[float]:
    """The last logged value of the first of ``names`` that was logged (None if none was)."""
    for name in names:
        values = [v for _, v in scalars.get(name, []) if not math.isnan(v)]
        if values:
            return values[-1]
    return None


def require_scalars(folder: Path, what: str) -> Scalars:
    scalars = read_scalars(folder)
    if not scalars:
        raise FileNotFoundError(f"{folder}: no logged metrics ({what}); the config's trainer.logger must be a "
                                f"TensorBoardLogger or CSVLogger writing into trainer.default_root_dir")
    return scalars
