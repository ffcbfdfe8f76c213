"""Results image by image, for looking at where a network fails: a prediction at the image's own size, each
image's per-class IoU, and labels of one dataset renamed into another's classes (to run a CamVid network on the
synthetic streets, say)."""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .inference import segment


@torch.no_grad()
def predict_labels(net: nn.Module, image: torch.Tensor, pad_to: int = 32, scales: Sequence[float] = (1.0,),
                   flip: bool = False) -> torch.Tensor:
    """Class ids ``(H, W)`` of one normalised ``(3, H, W)`` image at its own size: padded bottom/right to a
    multiple of ``pad_to`` (what the network's strides need) for the pass, the padding cropped off after.

    Args:
        net: images to logits at the input resolution, in eval mode.
        image: the normalised image.
        pad_to: pad height and width up to a multiple of this.
        scales: test-time scales (softmax averaged), as ``segment``.
        flip: also average the horizontally flipped pass.
    """
    h, w = image.shape[-2:]
    padded = F.pad(image[None], (0, -w % pad_to, 0, -h % pad_to))
    device = next(net.parameters()).device
    return segment(net, padded.to(device), scales, flip)[0, :, :h, :w].argmax(0).cpu()


def image_iou(prediction: torch.Tensor, target: torch.Tensor, num_classes: int,
              ignore_index: int = 255) -> torch.Tensor:
    """Per-class IoU of one image (NaN for a class in neither the prediction nor the labelled pixels)."""
    keep = target != ignore_index
    pred, true = prediction[keep].long(), target[keep].long()
    pred_count = torch.bincount(pred, minlength=num_classes)[:num_classes].double()
    true_count = torch.bincount(true, minlength=num_classes)[:num_classes].double()
    both = torch.bincount(true[pred == true], minlength=num_classes)[:num_classes].double()
    union = pred_count + true_count - both
    return torch.where(union > 0, both / union.clamp_min(1), torch.full_like(union, float("nan")))


def class_lookup(source: Sequence[str], target: Sequence[str], aliases: Optional[Mapping[str, str]] = None,
                 ignore_index: int = 255) -> torch.Tensor:
    """A 256-entry table turning ``source`` class ids into ``target`` ids by class name (``aliases`` renames source
    classes first, e.g. ``{"person": "pedestrian"}``); source classes without a target and ``ignore_index`` map to
    ``ignore_index``. Index it with a label map: ``lookup[mask]``.

    Args:
        source: class names of the labels, in id order.
        target: class names of the network, in id order.
        aliases: source name -> target name, where they differ.
        ignore_index: label of pixels that count nowhere.
    """
    aliases = dict(aliases or {})
    index: Dict[str, int] = {name: i for i, name in enumerate(target)}
    missing = sorted(set(aliases.values()) - set(index))
    if missing:
        raise ValueError(f"aliases name classes the network does not have: {missing}; its classes: {list(target)}")
    lookup = torch.full((256,), ignore_index, dtype=torch.long)
    for i, name in enumerate(source):
        lookup[i] = index.get(aliases.get(name, name), ignore_index)
    return lookup


__all__ = ["class_lookup", "image_iou", "predict_labels"]
