"""Panoptic heads, registered by name beside the aggregation heads and classifiers of ``heads``: they take the
feature map the network's classifier would see (``forward_features``, output stride 8 or 4) and predict the
semantic classes, an instance-centre heatmap and centre offsets.

A panoptic head is built as ``cls(in_channels, num_classes, **options)`` and its ``forward(feature, size)`` returns
``{"semantic": (N, C, H, W), "center": (N, 1, H, W), "offset": (N, 2, H, W)}`` at ``size`` (the input's), offsets
in input pixels (y, x). ``panoptic_deeplab`` is Panoptic-DeepLab's: per branch a 5x5 depthwise-separable
conv-BN-ReLU and a 1x1 predictor, the outputs brought to the input resolution and the offsets, predicted in
feature-map pixels, scaled by the same factor.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

import torch
from torch import nn

from hyctas_lightning.registry import Registry

from .blocks import resize

PANOPTIC_HEADS: Registry[Callable[..., nn.Module]] = Registry("panoptic head")


def register_panoptic_head(name: str, *, overwrite: bool = False) -> Callable:
    """Register a panoptic head class (contract in the module doc) under ``name``.

    Args:
        name: the name configs use (``model.init_args.panoptic_head``).
        overwrite: replace an existing registration instead of refusing it.
    """
    return PANOPTIC_HEADS.register(name, overwrite=overwrite)


def separable_conv(c_in: int, c_out: int, kernel_size: int = 5) -> nn.Sequential:
    """Depthwise k x k conv-BN-ReLU, then pointwise conv-BN-ReLU (a plain Sequential, so BN folding finds it)."""
    return nn.Sequential(nn.Conv2d(c_in, c_in, kernel_size, padding=kernel_size // 2, groups=c_in, bias=False),
                         nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


@register_panoptic_head("panoptic_deeplab")
class PanopticHead(nn.Module):
    """Semantic (``num_classes``), centre heatmap (1) and offset (2: y, x) branches on one feature map.

    Args:
        in_channels: channels of the feature map.
        num_classes: semantic classes.
        head_channels: width of the semantic branch (None: ``in_channels``).
        instance_channels: width of the centre and offset branches (Panoptic-DeepLab: 32).
        kernel_size: of the depthwise convs.
    """

    def __init__(self, in_channels: int, num_classes: int, head_channels: Optional[int] = None,
                 instance_channels: int = 32, kernel_size: int = 5) -> None:
        super().__init__()
        head_channels = head_channels or in_channels
        self.semantic = nn.Sequential(separable_conv(in_channels, head_channels, kernel_size),
                                      nn.Conv2d(head_channels, num_classes, 1))
        self.center = nn.Sequential(separable_conv(in_channels, instance_channels, kernel_size),
                                    nn.Conv2d(instance_channels, 1, 1))
        self.offset = nn.Sequential(separable_conv(in_channels, instance_channels, kernel_size),
                                    nn.Conv2d(instance_channels, 2, 1))
        for predictor in (self.center[-1], self.offset[-1]):  # start at "no centre, no offset": a random heatmap
            nn.init.zeros_(predictor.weight)                  # costs 200x its MSE and drowns the semantic gradient
            nn.init.zeros_(predictor.bias)

    def forward(self, feature: torch.Tensor, size: Sequence[int]) -> Dict[str, torch.Tensor]:
        """``{"semantic": (N, C, H, W) logits, "center": (N, 1, H, W), "offset": (N, 2, H, W)}`` at ``size``."""
        scale = feature.new_tensor([size[0] / feature.shape[-2], size[1] / feature.shape[-1]]).view(1, 2, 1, 1)
        return {"semantic": resize(self.semantic(feature), size), "center": resize(self.center(feature), size),
                "offset": resize(self.offset(feature), size) * scale}


class PanopticNetwork(nn.Module):
    """A network with ``forward_features(images)`` and ``num_features`` (a ``ChildNet``) under a panoptic head.

    The backbone's own classifier is replaced by an identity: the head's semantic branch classifies, and a
    classifier without gradients would stall distributed training.

    Args:
        backbone: the feature network.
        num_classes: semantic classes.
        head: a registered panoptic head (``PANOPTIC_HEADS``).
        **options: the head's own arguments (``panoptic_deeplab``: ``head_channels``, ``instance_channels``).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, head: str = "panoptic_deeplab",
                 **options: Any) -> None:
        super().__init__()
        if not hasattr(backbone, "forward_features") or not hasattr(backbone, "num_features"):
            raise ValueError(f"{type(backbone).__name__} has no forward_features/num_features: the panoptic head "
                             "needs a network that exposes its feature map (a ChildNet of an architecture)")
        if isinstance(getattr(backbone, "classifier", None), nn.Module):
            backbone.classifier = nn.Identity()
        self.backbone = backbone
        self.num_classes = num_classes
        # where training attaches auxiliary heads, as the backbone declares them
        self.aux_features = {f"backbone.{name}": c for name, c in getattr(backbone, "aux_features", {}).items()}
        self.head = PANOPTIC_HEADS.get(head)(backbone.num_features, num_classes, **options)

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.head(self.backbone.forward_features(images), images.shape[-2:])
