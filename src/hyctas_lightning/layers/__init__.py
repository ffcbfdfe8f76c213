"""Small composable layers shared by the supernet and its children, and the inference shortcuts they take."""
from .functional import attention, resize_bilinear
from .inference import DerivedWeights, DerivedWeightsOwner, derived_tensors, inference_shortcuts
from .slimmable import ConvBNAct, SlimBatchNorm2d, SlimConv2d, bilinear_half, copy_prefix_, half_size

__all__ = ["ConvBNAct", "DerivedWeights", "DerivedWeightsOwner", "SlimBatchNorm2d", "SlimConv2d", "attention",
           "bilinear_half", "copy_prefix_", "derived_tensors", "half_size", "inference_shortcuts", "resize_bilinear"]
