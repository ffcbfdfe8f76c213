"""LightningModules: training the supernet, retraining a fixed architecture or a registered network, and
panoptic segmentation on a searched network."""
from .losses import distillation_loss, segmentation_loss
from .panoptic import PanopticModule
from .prediction import PanopticWriter, SegmentationWriter
from .sampling import SandwichSampler
from .schedules import PolyWarmup, PolyWarmupLR
from .segmentation import SegmentationModule
from .supernet import SupernetModule

__all__ = ["PanopticModule", "PanopticWriter", "PolyWarmup", "PolyWarmupLR", "SandwichSampler", "SegmentationModule",
           "SegmentationWriter", "SupernetModule", "distillation_loss", "segmentation_loss"]
