"""LightningModules: training the supernet and retraining a fixed architecture or a registered network."""
from .checkpointing import AtomicCheckpointIO, LastCheckpoint, RandomStateCheckpoint
from .divergence import DivergenceGuard
from .losses import distillation_loss, segmentation_loss
from .prediction import SegmentationWriter
from .sampling import SandwichSampler
from .schedules import PolyWarmup, PolyWarmupLR
from .segmentation import SegmentationModule
from .supernet import SupernetModule

__all__ = ["AtomicCheckpointIO", "DivergenceGuard", "LastCheckpoint", "PolyWarmup", "PolyWarmupLR",
           "RandomStateCheckpoint", "SandwichSampler", "SegmentationModule", "SegmentationWriter", "SupernetModule",
           "distillation_loss", "segmentation_loss"]
