"""Small composable layers shared by the supernet and its children."""
from .functional import attention, resize_bilinear
from .slimmable import ConvBNAct, SlimBatchNorm2d, SlimConv2d, bilinear_half, copy_prefix_, half_size

__all__ = ["ConvBNAct", "SlimBatchNorm2d", "SlimConv2d", "attention", "bilinear_half", "copy_prefix_", "half_size",
           "resize_bilinear"]
