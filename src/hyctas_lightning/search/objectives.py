"""Search objectives, registered by name so a YAML list (``objectives: [miou, latency_ms]``) selects them and
a user can add their own."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from hyctas_lightning.registry import Registry
from hyctas_lightning.search_space import Architecture


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
    """

    name: str
    direction: int
    label: str
    key: Optional[str] = None
    compute: Optional[Callable[[Architecture, Mapping[str, float]], float]] = None
    worst: Optional[float] = None  # natural reference for the hypervolume (e.g. mIoU 0)

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
