"""Networks: the weight-sharing supernet, standalone child networks and the registry of named networks."""
from .baselines import NETWORKS, TorchvisionSegmentation, build_network, register_network
from .childnet import ChildNet
from .panoptic import PanopticHead, PanopticNetwork
from .supernet import SuperNet

__all__ = ["ChildNet", "NETWORKS", "PanopticHead", "PanopticNetwork", "SuperNet", "TorchvisionSegmentation",
           "build_network", "register_network"]
