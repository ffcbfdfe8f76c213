"""Name -> factory registries, so users plug in operators, datasets and heads from their own files."""
from __future__ import annotations

import importlib
from typing import Callable, Dict, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories filled by a decorator (``@OPS.register("name")``).

    Args:
        kind: what the table holds (``operator``, ``dataset``), named in its error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        """A decorator that files its argument under ``name``.

        Args:
            name: the name configs and builders select it by.
            overwrite: replace an existing entry of that name instead of raising.
        """
        def decorator(obj: T) -> T:
            if name in self._items and not overwrite and self._items[name] is not obj:
                raise KeyError(f"{self.kind} '{name}' is already registered; pass overwrite=True to replace it")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The entry registered as ``name``; the error lists the registered names.

        Args:
            name: a registered name.
        """
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} '{name}'; registered: {', '.join(sorted(self._items))}. "
                f"Import the module that registers it before use."
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return list(self._items)


def import_plugins(modules: Iterable[str]) -> None:
    """Import a user's modules so the ops, networks, heads or datasets they register can be named. Only modules the
    user names (``--plugins``, a config's ``plugins:``) are imported, never ones a checkpoint or journal lists.

    Args:
        modules: dotted module names, importable from ``PYTHONPATH``.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ValueError(f"plugins: cannot import '{module}' ({e}); put its folder on PYTHONPATH") from None
