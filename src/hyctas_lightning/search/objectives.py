"""Search objectives, registered by name so a YAML list (``objectives: [miou, latency_ms]``) selects them and
a user can add their own; an objective that takes settings gets them from ``objective_args``."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from hyctas_lightning.fileio import read_json
from hyctas_lightning.ranking.surrogate import DEFAULT_FEATURES, Surrogate, fit_surrogate, profile_features
from hyctas_lightning.registry import Registry
from hyctas_lightning.search_space import Architecture

from .journal import read_journal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Objective:
    """One axis of the search: ``direction`` +1 is maximised, -1 minimised. The value is read from the
    evaluator's measurements under ``key``, or computed by ``compute(arch, measurements)``.

    Args:
        name: the name configs list it by (``objectives: [miou, latency_ms]``).
        direction: +1 to maximise, -1 to minimise.
        label: axis label of plots and tables, with units (``latency (ms)``).
        key: measurement to read (None: ``name``).
        compute: function of the architecture and the measurements, for values no evaluator measures directly
            (None: read ``key``).
        worst: natural reference point of the hypervolume (e.g. mIoU 0); None takes it from the data.
        build: for an objective that takes settings (``objective_args: {name: {...}}`` of the search config): a
            function of those settings returning the objective to use (None: it takes none).
    """

    name: str
    direction: int
    label: str
    key: Optional[str] = None
    compute: Optional[Callable[[Architecture, Mapping[str, float]], float]] = None
    worst: Optional[float] = None  # natural reference for the hypervolume (e.g. mIoU 0)
    build: Optional[Callable[..., Objective]] = None

    def value(self, arch: Architecture, measurements: Mapping[str, Optional[float]]) -> Optional[float]:
        if self.compute is not None:
            return self.compute(arch, measurements)
        return measurements.get(self.key or self.name)


OBJECTIVES: Registry[Objective] = Registry("search objective")


def register_objective(objective: Objective, *, overwrite: bool = False) -> Objective:
    """Make ``objective`` selectable by its name in a search config.

    Args:
        objective: the objective to register.
        overwrite: replace an existing objective of that name instead of raising.
    """
    return OBJECTIVES.register(objective.name, overwrite=overwrite)(objective)


register_objective(Objective("miou", +1, "mIoU", worst=0.0))
register_objective(Objective("latency_ms", -1, "latency (ms)"))
register_objective(Objective("macs_g", -1, "mult-adds (G)"))
register_objective(Objective("params_m", -1, "parameters (M)"))


def bind_objectives(names: Sequence[str],
                    settings: Optional[Mapping[str, Mapping[str, Any]]] = None) -> List[Objective]:
    """The objectives ``names`` name, each built from its entry of ``settings`` where it takes settings.

    Args:
        names: registered objective names, in order.
        settings: ``{name: {setting: value}}`` (a search config's ``objective_args``).
    """
    settings = dict(settings or {})
    bound = []
    for name in names:
        objective, given = OBJECTIVES.get(name), settings.get(name)
        if objective.build is None:
            if given:
                raise ValueError(f"search config: objective_args.{name}: the objective '{name}' takes no settings")
            bound.append(objective)
            continue
        if given is None:
            raise ValueError(f"search config: objective_args.{name}: the objective '{name}' needs settings (see "
                             f"{objective.build.__module__}.{objective.build.__name__})")
        try:
            bound.append(objective.build(**given))
        except TypeError as e:
            raise ValueError(f"search config: objective_args.{name}: {e}") from None
    return bound


Paths = Union[str, Sequence[str]]


def _paths(value: Paths) -> List[Path]:
    return [Path(value)] if isinstance(value, (str, Path)) else [Path(v) for v in value]


def read_estimates(path: Path) -> Dict[str, Dict[str, Any]]:
    """``{architecture hash: {"miou": supernet estimate, ..., "arch": dict or None}}`` from a ranking study's
    ``estimates.json``, a ``hyctas rank`` ``ranking.json`` or a search journal ``candidates.jsonl`` (which also
    holds the latency of each candidate).

    Args:
        path: the file.
    """
    if path.suffix == ".jsonl":
        return {c.hash: {**c.measurements, "arch": c.arch.to_dict()} for c in read_journal(path)
                if c.measurements.get("miou") is not None}
    data = read_json(path)
    if isinstance(data, dict) and "scores" in data and "panel" in data:
        return {Architecture.from_dict(data["panel"][n]).hash: {"miou": v, "arch": data["panel"][n]}
                for n, v in data["scores"].items()}
    if isinstance(data, dict) and "members" in data:
        return {m["hash"]: {"miou": m["supernet_miou"], "arch": None} for m in data["members"].values()
                if m.get("supernet_miou") is not None}
    raise ValueError(f"{path}: not a source of supernet estimates; give a ranking study's estimates.json, a "
                     f"`hyctas rank` ranking.json or a search journal candidates.jsonl")


def _standalone(folders: Paths) -> Dict[str, Dict[str, Any]]:
    """``{hash: {"miou": mean over the folders, "arch": dict or None}}`` of reference folders (one per seed)."""
    found: Dict[str, Dict[str, Any]] = {}
    for folder in _paths(folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"objective_args.surrogate_miou.references: {folder} is no folder; give the "
                                    f"folders of standalone results (HASH.json with 'miou'), e.g. OUT/references/KEY")
        for path in sorted(folder.glob("*.json")):
            entry = read_json(path)
            if isinstance(entry, dict) and "miou" in entry:
                row = found.setdefault(path.stem, {"values": [], "arch": entry.get("arch")})
                row["values"].append(float(entry["miou"]))
    return {h: {"miou": sum(r["values"]) / len(r["values"]), "arch": r["arch"]} for h, r in found.items()}


class SurrogateMiou:
    """The value of ``surrogate_miou`` for a candidate: the surrogate's prediction from its measurements
    (the supernet's estimate and, where used, latency) and its multiply-adds and parameters (``profile_features``,
    counted the same way for references and candidates).

    Args:
        surrogate: the fitted surrogate.
    """

    def __init__(self, surrogate: Surrogate) -> None:
        self.surrogate = surrogate

    def __call__(self, arch: Architecture, measurements: Mapping[str, Optional[float]]) -> Optional[float]:
        costs = profile_features(arch) if {"macs", "params"} & set(self.surrogate.features) else {}
        return self.surrogate.predict({**measurements, **costs})


def surrogate_miou(references: Paths, estimates: Paths, features: Sequence[str] = DEFAULT_FEATURES,
                   alpha: float = 1.0) -> Objective:
    """The ``surrogate_miou`` objective (NSGANetV2, ECCV 2020): the standalone mIoU a surrogate predicts, fitted on
    the architectures already trained alone. Use it where the supernet's estimates alone do not rank
    (docs/SUPERNET_RANKING.md); its leave-one-out Kendall tau is logged when it is fitted. Train the new front
    members alone, add them to ``references`` (and their estimates, e.g. this search's journal, to ``estimates``)
    and search again: the surrogate refits on every start.

    Args:
        references: folder(s) of standalone results (``HASH.json`` with ``miou``, e.g. a ranking study's
            ``references/KEY``; several folders, one per seed, are averaged).
        estimates: file(s) with the same architectures' supernet estimates (a ranking study's ``estimates.json``,
            a ``hyctas rank`` ``ranking.json``, a search journal ``candidates.jsonl``), from the supernet searched.
        features: the surrogate's inputs: ``estimate``, ``macs``, ``params``, ``latency`` (only from journals).
        alpha: ridge penalty on the standardised inputs.
    """
    targets = _standalone(references)
    measured: Dict[str, Dict[str, Any]] = {}
    for path in _paths(estimates):
        measured.update(read_estimates(path))
    rows, ys = [], []
    for h in sorted(set(targets) & set(measured)):
        arch = targets[h]["arch"] or measured[h]["arch"]
        if arch is None:
            raise ValueError(f"objective_args.surrogate_miou: reference {h} names no architecture ('arch') in its "
                             f"HASH.json or estimates; give the ranking study's estimates.json among estimates")
        rows.append({**measured[h], **profile_features(Architecture.from_dict(arch))})
        ys.append(targets[h]["miou"])
    surrogate = fit_surrogate(rows, ys, features, alpha)
    log.info("surrogate_miou: fitted on %d references, leave-one-out Kendall tau %.3f", surrogate.n,
             surrogate.loo_tau)
    return dataclasses.replace(OBJECTIVES.get("surrogate_miou"), compute=SurrogateMiou(surrogate), build=None)


register_objective(Objective("surrogate_miou", +1, "surrogate mIoU (trained alone)", worst=0.0,
                             build=surrogate_miou))
