"""hyctas-lightning: multi-objective hybrid convolution-transformer architecture search for segmentation.

The front door is timm-style: ``create_network("hyctas_s", num_classes=19)`` builds any registered network (the
HyCTAS presets, the torchvision baselines, your plugins) or an architecture JSON, and
``create_network("searched_camvid.camvid", pretrained=True)`` a model-zoo network with its weights;
``list_networks()`` lists them.
"""
from .models import ChildNet, SuperNet, create_network, list_networks, load_architecture, register_network
from .ops import OPS, register_op
from .search_space import Architecture, ArchitectureError, SearchSpace

__version__ = "0.1.0"
__all__ = ["Architecture", "ArchitectureError", "ChildNet", "OPS", "SearchSpace", "SuperNet", "create_network",
           "list_networks", "load_architecture", "register_network", "register_op"]
