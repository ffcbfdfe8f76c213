"""LightningModules: training the supernet, retraining a fixed architecture or a registered network, and
panoptic segmentation on a searched network."""
from .checkpointing import AsyncAtomicCheckpointIO, AtomicCheckpointIO, LastCheckpoint, RandomStateCheckpoint
from .deadline import Deadline
from .divergence import DivergenceGuard
from .efficiency import GpuBusy, TrainingEfficiency
from .losses import distillation_loss, segmentation_loss
from .panoptic import PanopticModule
from .prediction import PanopticWriter, SegmentationWriter
from .ranking import (
    RankingCallback,
    RankingReport,
    ReferenceCache,
    StandaloneRecipe,
    estimate_panel,
    ranking_panel,
    train_standalone,
)
from .sampling import SAMPLERS, SandwichSampler, build_sampler, register_sampler
from .schedules import PolyWarmup, PolyWarmupLR
from .segmentation import SegmentationModule
from .supernet import SupernetModule

__all__ = ["AsyncAtomicCheckpointIO", "AtomicCheckpointIO", "Deadline", "DivergenceGuard", "GpuBusy", "LastCheckpoint",
           "PanopticModule", "PanopticWriter", "PolyWarmup", "PolyWarmupLR", "RandomStateCheckpoint", "RankingCallback",
           "RankingReport", "ReferenceCache", "SAMPLERS", "SandwichSampler", "SegmentationModule", "SegmentationWriter",
           "StandaloneRecipe", "SupernetModule", "TrainingEfficiency", "build_sampler", "distillation_loss",
           "estimate_panel", "ranking_panel", "register_sampler", "segmentation_loss", "train_standalone"]
