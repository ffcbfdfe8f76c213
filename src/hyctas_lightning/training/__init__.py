"""LightningModules: training the supernet, retraining a fixed architecture or a registered network, and
panoptic segmentation on a searched network."""
from .checkpointing import AsyncAtomicCheckpointIO, AtomicCheckpointIO, LastCheckpoint, RandomStateCheckpoint
from .deadline import Deadline
from .divergence import DivergenceGuard
from .efficiency import GpuBusy, TrainingEfficiency
from .losses import distillation_loss, segmentation_loss
from .panoptic import PanopticModule
from .prediction import PanopticWriter, SegmentationWriter
from .sampling import SAMPLERS, SPLITS, SandwichSampler, build_sampler, register_sampler, register_split
from .schedules import PolyWarmup, PolyWarmupLR
from .segmentation import SegmentationModule
from .standalone import train_references, train_standalone
from .supernet import ComplexityScale, SupernetModule, WarmStart
from .throughput import TrainingThroughput

__all__ = ["AsyncAtomicCheckpointIO", "AtomicCheckpointIO", "ComplexityScale", "Deadline", "DivergenceGuard", "GpuBusy",
           "LastCheckpoint", "PanopticModule", "PanopticWriter", "PolyWarmup", "PolyWarmupLR", "RandomStateCheckpoint",
           "SAMPLERS", "SPLITS", "SandwichSampler", "SegmentationModule", "SegmentationWriter", "SupernetModule",
           "TrainingEfficiency", "TrainingThroughput", "WarmStart", "build_sampler", "distillation_loss",
           "register_sampler", "register_split", "segmentation_loss", "train_references", "train_standalone"]
