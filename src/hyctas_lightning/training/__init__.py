"""LightningModules: training a fixed architecture (and, later, the supernet)."""
from .segmentation import SegmentationModule

__all__ = ["SegmentationModule"]
