"""Search space: the Architecture value and the space it is drawn from."""
from .architecture import (
                           NODES,
                           OUTPUT_COMBINATIONS,
                           SCALES,
                           Architecture,
                           ArchitectureError,
                           Branch,
                           channels,
                           estimate_training_memory_gb,
)
from .space import SearchSpace

__all__ = ["Architecture", "ArchitectureError", "Branch", "SearchSpace", "channels", "estimate_training_memory_gb",
           "NODES", "OUTPUT_COMBINATIONS", "SCALES"]
