"""Datasets: the registry of LightningDataModules and the embedded procedural street scenes."""
from .registry import DATASETS, register_datamodule
from .synthetic import (SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, SyntheticStreetDataModule, SyntheticStreets,
                        render_scene)

__all__ = ["DATASETS", "SYNTHETIC_CLASSES", "SYNTHETIC_PALETTE", "SyntheticStreetDataModule", "SyntheticStreets",
           "register_datamodule", "render_scene"]
