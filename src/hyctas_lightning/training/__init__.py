"""LightningModules: training the supernet, retraining a fixed architecture or a registered network, and
panoptic segmentation on a searched network."""
from .checkpointing import AtomicCheckpointIO, LastCheckpoint, RandomStateCheckpoint
from .divergence import DivergenceGuard
from .losses import distillation_loss, segmentation_loss
from .panoptic import PanopticModule
from .prediction import PanopticWriter, SegmentationWriter
from .sampling import SandwichSampler
from .schedules import PolyWarmup, PolyWarmupLR
from .segmentation import SegmentationModule
from .supernet import SupernetModule

__all__ = ["AtomicCheckpointIO", "DivergenceGuard", "LastCheckpoint", "PanopticModule", "PanopticWriter", "PolyWarmup",
           "PolyWarmupLR", "RandomStateCheckpoint", "SandwichSampler", "SegmentationModule", "SegmentationWriter",
           "SupernetModule", "distillation_loss", "segmentation_loss"]
