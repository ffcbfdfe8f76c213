"""The search-strategy registry: ``@register_strategy("name")`` makes a strategy selectable as ``strategy: name``
in a search config. A strategy is ``fn(run: SearchRun) -> None`` that evaluates candidates through
``run.evaluate`` and records each generation with ``run.record_generation``; its own settings (a dataclass given
as ``settings=``) come from the config's ``strategy_args`` as ``run.settings``."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional

from hyctas_lightning.registry import Registry

STRATEGIES: Registry[Callable] = Registry("search strategy")


def register_strategy(name: str, *, settings: Optional[type] = None,
                      overwrite: bool = False) -> Callable[[Callable], Callable]:
    """Register a search strategy under ``name``.

    Args:
        name: the value of ``strategy:`` that selects it.
        settings: a dataclass of the strategy's own settings, filled from ``strategy_args`` (None: the strategy
            gets ``strategy_args`` as a plain dict).
        overwrite: replace an existing registration instead of refusing it.
    """
    def decorator(fn: Callable) -> Callable:
        fn.settings = settings
        return STRATEGIES.register(name, overwrite=overwrite)(fn)

    return decorator


def strategy_settings(name: str, args: Dict[str, Any]) -> Any:
    """The settings of strategy ``name`` from ``strategy_args``: its settings dataclass (a clear error for unknown
    or wrong arguments), or the dict itself for a strategy that declares none.

    Args:
        name: a registered strategy.
        args: the config's ``strategy_args``.
    """
    cls = getattr(STRATEGIES.get(name), "settings", None)
    if cls is None:
        return dict(args)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ValueError(f"search config: strategy_args: {unknown} not settings of strategy '{name}'; its settings: "
                         f"{', '.join(known)}")
    try:
        return cls(**args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"search config: strategy_args of strategy '{name}': {e}") from None
