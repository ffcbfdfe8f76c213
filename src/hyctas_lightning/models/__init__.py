"""Networks: the weight-sharing supernet and standalone child networks."""
from .childnet import ChildNet
from .supernet import SuperNet

__all__ = ["ChildNet", "SuperNet"]
