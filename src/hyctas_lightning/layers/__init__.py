"""Small composable layers shared by the supernet and its children."""
from .slimmable import ConvBNAct, SlimBatchNorm2d, SlimConv2d, bilinear_half, copy_prefix_, half_size

__all__ = ["ConvBNAct", "SlimBatchNorm2d", "SlimConv2d", "bilinear_half", "copy_prefix_", "half_size"]
