"""The dataset registry: ``@register_datamodule("name")`` makes a LightningDataModule selectable by name."""
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
    """
    return DATASETS.register(name, overwrite=overwrite)


LOADER_ONLY = ("num_workers", "pin_memory", "persistent_workers")


def datamodule_spec(datamodule: L.LightningDataModule) -> Dict[str, Any]:
    """``class_path`` and ``init_args`` that rebuild ``datamodule`` (what checkpoints carry)."""
    cls = type(datamodule)
    args = {k: v for k, v in getattr(datamodule, "hparams", {}).items() if not k.startswith("_")}
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": args}


def build_datamodule(spec: Dict[str, Any], **overrides: Any) -> L.LightningDataModule:
    """The DataModule of a ``class_path``/``init_args`` spec (``overrides`` replace arguments), nested settings
    (e.g. ``transforms``) typed by jsonargparse exactly as ``hyctas fit`` builds them from YAML.

    Args:
        spec: ``{"class_path": ..., "init_args": {...}}``, e.g. a supernet checkpoint's ``hyctas.data``.
        overrides: init arguments to replace, e.g. ``batch_size=16``.
    """
    from jsonargparse import ArgumentParser

    args = {k: v for k, v in {**spec.get("init_args", {}), **overrides}.items() if not k.startswith("_")}
    builder = ArgumentParser(exit_on_error=False)
    builder.add_argument("--data", type=L.LightningDataModule)
    config = builder.parse_object({"data": {"class_path": spec["class_path"], "init_args": args}})
    return builder.instantiate_classes(config).data
