"""LightningModules: training the supernet and retraining a fixed architecture or a registered network."""
from .checkpointing import AtomicCheckpointIO, LastCheckpoint, RandomStateCheckpoint
from .deadline import Deadline
from .divergence import DivergenceGuard
from .losses import distillation_loss, segmentation_loss
from .prediction import SegmentationWriter
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

__all__ = ["AtomicCheckpointIO", "Deadline", "DivergenceGuard", "LastCheckpoint", "PolyWarmup", "PolyWarmupLR",
           "RandomStateCheckpoint", "RankingCallback", "RankingReport", "ReferenceCache", "SAMPLERS",
           "SandwichSampler", "SegmentationModule", "SegmentationWriter", "StandaloneRecipe", "SupernetModule",
           "build_sampler", "distillation_loss", "estimate_panel", "ranking_panel", "register_sampler",
           "segmentation_loss", "train_standalone"]
