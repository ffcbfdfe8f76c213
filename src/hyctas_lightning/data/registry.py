"""The dataset registry: ``@register_datamodule("name")`` makes a LightningDataModule selectable by name, and
``build_datamodule`` turns a data spec (a registered name or a class path, plus its arguments) into one."""
from __future__ import annotations

from typing import Any, Callable, Dict, Type

import lightning as L

from hyctas_lightning.registry import Registry

DATASETS: Registry[Type[L.LightningDataModule]] = Registry("dataset")


def register_datamodule(
    name: str, *, overwrite: bool = False
) -> Callable[[Type[L.LightningDataModule]], Type[L.LightningDataModule]]:
    """Register a LightningDataModule class under ``name`` so commands and configs can pick it by that name.

    The class should expose ``num_classes``, ``classes``, ``palette`` and ``ignore_index`` so that models,
    metrics and plots size themselves from the data rather than from hard-coded constants.

    Args:
        name: the name a data spec's ``class_path`` may give instead of the import path.
        overwrite: replace an existing registration instead of refusing it.
    """
    return DATASETS.register(name, overwrite=overwrite)


# data-module arguments that change how data is loaded, never which samples come out
LOADER_ONLY = ("num_workers", "pin_memory", "persistent_workers")


def class_path(datamodule_type: type) -> str:
    """The registered name of a DataModule class if it has one, else its import path."""
    for name in DATASETS:
        if DATASETS.get(name) is datamodule_type:
            return name
    return f"{datamodule_type.__module__}.{datamodule_type.__qualname__}"


def datamodule_spec(datamodule: L.LightningDataModule) -> Dict[str, Any]:
    """``class_path`` and ``init_args`` that rebuild ``datamodule`` with :func:`build_datamodule` (what
    checkpoints carry).

    Args:
        datamodule: a DataModule whose ``hparams`` hold its init arguments.
    """
    args = {k: v for k, v in getattr(datamodule, "hparams", {}).items() if not k.startswith("_")}
    return {"class_path": class_path(type(datamodule)), "init_args": args}


def build_datamodule(spec: Dict[str, Any], **overrides: Any) -> L.LightningDataModule:
    """The DataModule of ``{"class_path": NAME_OR_PATH, "init_args": {...}}``, nested settings (e.g.
    ``transforms``) typed by jsonargparse exactly as ``hyctas fit`` builds them from YAML. ``class_path`` may be
    a registered name (``camvid``) or an import path.

    Args:
        spec: the data spec, e.g. a supernet checkpoint's ``hyctas.data``.
        overrides: init arguments to replace, e.g. ``batch_size=16``.
    """
    from jsonargparse import ArgumentParser

    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(f"data: expected {{class_path: NAME, init_args: {{...}}}}, got {spec!r}; registered "
                         f"names: {', '.join(DATASETS)}")
    path = spec["class_path"]
    if path in DATASETS:
        cls = DATASETS.get(path)
        path = f"{cls.__module__}.{cls.__qualname__}"
    args = {k: v for k, v in {**(spec.get("init_args") or {}), **overrides}.items() if not k.startswith("_")}
    builder = ArgumentParser(exit_on_error=False)
    builder.add_argument("--data", type=L.LightningDataModule)
    config = builder.parse_object({"data": {"class_path": path, "init_args": args}})
    return builder.instantiate_classes(config).data
