"""The search-strategy registry: ``@register_strategy("name")`` makes a strategy selectable as ``strategy: name``
in a search config. A strategy is ``fn(run: SearchRun) -> None`` that evaluates candidates through
``run.evaluate`` and records each generation with ``run.record_generation``."""
from __future__ import annotations

from typing import Callable

from hyctas_lightning.registry import Registry

STRATEGIES: Registry[Callable] = Registry("search strategy")


def register_strategy(name: str, *, overwrite: bool = False) -> Callable[[Callable], Callable]:
    """Register a search strategy under ``name``.

    Args:
        name: the value of ``strategy:`` that selects it.
        overwrite: replace an existing registration instead of refusing it.
    """
    return STRATEGIES.register(name, overwrite=overwrite)
