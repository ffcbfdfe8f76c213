"""Networks: the weight-sharing supernet, standalone child networks, their heads and the registry of named
networks."""
from .baselines import NETWORKS, TorchvisionSegmentation, build_network, register_network
from .childnet import ChildNet
from .heads import CLASSIFIERS, HEADS, register_classifier, register_head
from .supernet import SuperNet

__all__ = ["CLASSIFIERS", "ChildNet", "HEADS", "NETWORKS", "SuperNet", "TorchvisionSegmentation", "build_network",
           "register_classifier", "register_head", "register_network"]
