"""Hand-designed baselines of the paper's comparisons, registered by name: torchvision's LR-ASPP and DeepLabV3 on
MobileNetV3-Large, built from scratch (no weights), as images-to-logits networks."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from .blocks import resize
from .factory import register_network


class TorchvisionSegmentation(nn.Module):
    """A torchvision segmentation model (which returns ``{"out": logits, ...}``) as an images-to-logits network.

    The auxiliary feature is the stride-8 backbone stage, where torchvision's own DeepLabV3 auxiliary head sits.

    Args:
        model: a torchvision segmentation model with a MobileNetV3 ``backbone``.
        num_classes: its output classes.
    """

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        stage = _stride8_stage(model.backbone)
        self.aux_features: Dict[str, int] = {f"model.backbone.{stage}": model.backbone[stage].out_channels}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return resize(self.model(images)["out"], images.shape[-2:])


def _stride8_stage(backbone: nn.Module) -> str:
    """Name of the C2 (stride-8) block of a MobileNetV3 feature extractor, found as torchvision finds it."""
    names = list(backbone.keys())
    strided = [i for i, name in enumerate(names) if getattr(backbone[name], "_is_cn", False)]
    stages = [0] + strided + [len(names) - 1]
    return names[stages[-4]]


@register_network("lraspp_mobilenet_v3_large")
def lraspp_mobilenet_v3_large(num_classes: int) -> nn.Module:
    """LR-ASPP on MobileNetV3-Large (Howard et al. 2019), from scratch.

    Args:
        num_classes: output classes.
    """
    from torchvision.models import segmentation as tvseg  # on use: torchvision.models costs a second to import

    return TorchvisionSegmentation(tvseg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                   num_classes=num_classes), num_classes)


@register_network("deeplabv3_mobilenet_v3_large")
def deeplabv3_mobilenet_v3_large(num_classes: int) -> nn.Module:
    """DeepLabV3 on MobileNetV3-Large, from scratch, without torchvision's own auxiliary head.

    Args:
        num_classes: output classes.
    """
    from torchvision.models import segmentation as tvseg

    return TorchvisionSegmentation(tvseg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                      num_classes=num_classes, aux_loss=False),
                                   num_classes)
