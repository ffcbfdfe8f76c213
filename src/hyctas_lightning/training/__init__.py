"""LightningModules: training the supernet and retraining a fixed architecture."""
from .losses import distillation_loss, segmentation_loss
from .sampling import SandwichSampler
from .segmentation import SegmentationModule
from .supernet import SupernetModule

__all__ = ["SandwichSampler", "SegmentationModule", "SupernetModule", "distillation_loss", "segmentation_loss"]
