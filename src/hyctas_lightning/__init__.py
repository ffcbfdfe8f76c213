"""hyctas-lightning: multi-objective hybrid convolution-transformer architecture search for segmentation."""
from .models import ChildNet, SuperNet
from .ops import OPS, register_op
from .search_space import Architecture, ArchitectureError, SearchSpace

__version__ = "0.1.0"
__all__ = ["Architecture", "ArchitectureError", "ChildNet", "OPS", "SearchSpace", "SuperNet", "register_op"]
