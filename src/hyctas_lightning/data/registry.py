"""The dataset registry: ``@register_datamodule("name")`` makes a LightningDataModule selectable by name."""
from __future__ import annotations

from typing import Callable, Type

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
