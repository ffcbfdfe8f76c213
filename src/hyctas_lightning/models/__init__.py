"""Networks: the weight-sharing supernet, standalone child networks, and the registry behind ``create_network``
(presets, baselines, plugins)."""
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
from .panoptic import PanopticHead, PanopticNetwork
from .supernet import SuperNet

__all__ = ["ChildNet", "NETWORKS", "PanopticHead", "PanopticNetwork", "SuperNet", "TorchvisionSegmentation",
           "create_network", "list_networks", "load_architecture", "load_network", "load_network_weights",
           "load_supernet", "preset_names", "register_network"]
