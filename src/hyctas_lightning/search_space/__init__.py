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
)
from .panel import ranking_panel
from .space import SearchSpace

__all__ = ["Architecture", "ArchitectureError", "BUILD_SETTINGS", "Branch", "SearchSpace", "channels",
           "estimate_training_memory_gb", "NODES", "OUTPUT_COMBINATIONS", "SCALES", "ranking_panel"]
