"""Search space: the Architecture value and the space it is drawn from."""
from .architecture import (
    BUILD_SETTINGS,
    NODES,
    OUTPUT_COMBINATIONS,
    SCALES,
    Architecture,
    ArchitectureError,
    Branch,
    channels,
    estimate_training_memory_gb,
    regene,
)
from .panel import ABLATIONS, ablation_panel, ranking_panel
from .space import SearchSpace

__all__ = ["ABLATIONS", "Architecture", "ArchitectureError", "BUILD_SETTINGS", "Branch", "NODES", "OUTPUT_COMBINATIONS",
           "SCALES", "SearchSpace", "ablation_panel", "channels", "estimate_training_memory_gb", "ranking_panel",
           "regene"]
