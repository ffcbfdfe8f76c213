"""Networks: the weight-sharing supernet, standalone child networks, their heads and classifiers, and the
registry behind ``create_network`` (presets, baselines, plugins)."""
from . import baselines  # noqa: F401  (registers the torchvision baselines)
from .baselines import TorchvisionSegmentation
from .childnet import ChildNet
from .factory import (
                      NETWORKS,
                      create_network,
                      list_networks,
                      load_architecture,
                      load_network,
                      load_network_weights,
                      load_supernet,
                      preset_names,
                      register_network,
)
from .heads import CLASSIFIERS, HEADS, register_classifier, register_head
from .panoptic import PANOPTIC_HEADS, PanopticHead, PanopticNetwork, register_panoptic_head
from .supernet import SuperNet

__all__ = ["CLASSIFIERS", "ChildNet", "HEADS", "NETWORKS", "PANOPTIC_HEADS", "PanopticHead", "PanopticNetwork",
           "SuperNet", "TorchvisionSegmentation", "create_network", "list_networks", "load_architecture",
           "load_network", "load_network_weights", "load_supernet", "preset_names", "register_classifier",
           "register_head", "register_network", "register_panoptic_head"]
