"""LightningModules: training the supernet and retraining a fixed architecture or a registered network."""
from .deadline import Deadline
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
from .segmentation import SegmentationModule, build_segmentation_network, load_segmentation_network
from .supernet import SupernetModule

__all__ = ["Deadline", "PolyWarmup", "PolyWarmupLR", "RankingCallback", "RankingReport", "ReferenceCache", "SAMPLERS",
           "SandwichSampler", "SegmentationModule", "SegmentationWriter", "StandaloneRecipe", "SupernetModule",
           "build_sampler", "build_segmentation_network", "distillation_loss", "estimate_panel",
           "load_segmentation_network", "ranking_panel", "register_sampler", "segmentation_loss", "train_standalone"]
