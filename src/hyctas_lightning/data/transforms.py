"""Joint image/mask augmentation with albumentations, configured by a small dataclass that YAML can build.

Training: resize to a base size, random scale, pad with the ignore label up to the crop, random crop, flip,
photometric jitter, normalise. Evaluation: the whole image, normalised, optionally padded to a multiple of the
network's stride with the ignore label so padding never counts in metrics.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

# A library must not call PyPI at import time (albumentations checks for updates unless told not to).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from .labels import IGNORE_INDEX  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TransformConfig:
    """Augmentation settings (the ``transforms:`` entry of a data module in YAML).

    Args:
        crop_size: (height, width) in pixels of training crops, padded with the ignore label where the scaled
            image is smaller; None trains on whole (scaled) images, which only batches if they share one size.
        scale_range: (low, high) random rescaling factors drawn uniformly per training image, relative to the base
            size (Cityscapes recipes use about (0.5, 2.0)); (1.0, 1.0) disables scaling.
        base_size: short side in pixels every image is resized to first, in training and evaluation; None keeps
            native sizes. Lower it to train and evaluate at reduced resolution.
        hflip: random horizontal flips (p = 0.5) in training.
        color_jitter: strength of brightness/contrast/saturation jitter in training (0, the default, disables it).
        pad_to_multiple: pad evaluation images (bottom/right) to a multiple of this many pixels, the mask with the
            ignore label so padding never counts; set it to the network's output stride (e.g. 32) when image
            sizes are not multiples of it. None: no padding.
        mean: per-channel (RGB) mean subtracted from [0, 1] images (ImageNet's by default, matching pretrained
            weights).
        std: per-channel (RGB) standard deviation divided out after ``mean`` (ImageNet's by default).
    """

    crop_size: Optional[Tuple[int, int]] = None
    scale_range: Tuple[float, float] = (1.0, 1.0)
    base_size: Optional[int] = None
    hflip: bool = True
    color_jitter: float = 0.0
    pad_to_multiple: Optional[int] = None
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        low, high = self.scale_range
        checks = [
            (self.crop_size is None or (len(self.crop_size) == 2 and min(self.crop_size) > 0),
             f"crop_size must be (height, width) of positive ints or null, got {self.crop_size}"),
            (0 < low <= high, f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}"),
            (self.base_size is None or self.base_size > 0, f"base_size must be positive or null, got {self.base_size}"),
            (self.color_jitter >= 0, f"color_jitter must be >= 0, got {self.color_jitter}"),
            (self.pad_to_multiple is None or self.pad_to_multiple > 0,
             f"pad_to_multiple must be positive or null, got {self.pad_to_multiple}"),
            (len(self.mean) == 3 and len(self.std) == 3 and min(self.std) > 0,
             f"mean and std need 3 values each, std > 0; got {self.mean}, {self.std}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"transforms: {message}")


def _resize(config: TransformConfig) -> List[A.BasicTransform]:
    if config.base_size is None:
        return []
    return [A.SmallestMaxSize(max_size=config.base_size, interpolation=cv2.INTER_LINEAR,
                              mask_interpolation=cv2.INTER_NEAREST)]


def _normalise(config: TransformConfig) -> A.BasicTransform:
    return A.Normalize(mean=config.mean, std=config.std, max_pixel_value=255.0)


def _train_steps(config: TransformConfig) -> List[A.BasicTransform]:
    """Geometry first and on uint8 (cheaper), photometric jitter on the crop only, normalisation last."""
    steps = _resize(config)
    low, high = config.scale_range
    if (low, high) != (1.0, 1.0):
        steps.append(A.RandomScale(scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_LINEAR,
                                   mask_interpolation=cv2.INTER_NEAREST, p=1.0))
    if config.crop_size is not None:
        height, width = config.crop_size
        mean_pixel = tuple(round(255 * m) for m in config.mean)  # normalises to ~0, like evaluation padding
        steps += [A.PadIfNeeded(min_height=height, min_width=width, position="top_left",
                                border_mode=cv2.BORDER_CONSTANT, fill=mean_pixel, fill_mask=IGNORE_INDEX),
                  A.RandomCrop(height=height, width=width)]
    if config.hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if config.color_jitter > 0:
        j = config.color_jitter
        steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=0.0, p=1.0))
    return steps + [_normalise(config)]


def _eval_steps(config: TransformConfig) -> List[A.BasicTransform]:
    steps = _resize(config) + [_normalise(config)]
    if config.pad_to_multiple is not None:
        m = config.pad_to_multiple
        steps.append(A.PadIfNeeded(min_height=None, min_width=None, pad_height_divisor=m, pad_width_divisor=m,
                                   position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0.0,
                                   fill_mask=IGNORE_INDEX))
    return steps


def eval_size(config: TransformConfig, image_size: Sequence[int]) -> Tuple[int, int]:
    """(height, width) that an image of ``image_size`` has after the evaluation transforms, before their padding
    (albumentations' ``SmallestMaxSize`` rounding when ``base_size`` is set).

    Args:
        config: the augmentation settings.
        image_size: the image's own (height, width).
    """
    height, width = int(image_size[0]), int(image_size[1])
    if config.base_size is None:
        return height, width
    scale = config.base_size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_input_size(tensor: torch.Tensor, image_size: Sequence[int], config: TransformConfig) -> torch.Tensor:
    """A ``(..., H, W)`` map at evaluation resolution (an image or class scores) cropped to the image's own content,
    without the evaluation padding, and resized (bilinearly) back to ``image_size`` if ``base_size`` resized it.

    Args:
        tensor: the ``(..., H, W)`` map, as the network saw the padded image.
        image_size: the image's own (height, width).
        config: the evaluation's augmentation settings.
    """
    height, width = eval_size(config, image_size)
    out = tensor[..., :height, :width]
    target = (int(image_size[0]), int(image_size[1]))
    if out.shape[-2:] == target:
        return out
    lead = out.shape[:-2]
    resized = F.interpolate(out.reshape(1, -1, height, width).float(), size=target, mode="bilinear",
                            align_corners=False)
    return resized.reshape(*lead, *target).to(out.dtype)


def _streams(compose: A.BaseCompose) -> Iterator[Any]:
    """The composition and every transform in it: each draws from its own random generators."""
    yield compose
    for transform in compose.transforms:
        if isinstance(transform, A.BaseCompose):
            yield from _streams(transform)
        else:
            yield transform


class SegmentationTransform:
    """The training or evaluation pipeline of a config, returning the tensors a training step reads:
    image float32 (3, H, W) normalised, mask int64 (H, W), and for panoptic data the panoptic id map int64 (H, W),
    which takes exactly the mask's geometry (nearest resampling; its padding is marked by the mask's ignore label).

    Args:
        config: the augmentation settings.
        train: build the random training pipeline (True) or the deterministic evaluation one (False).
    """

    def __init__(self, config: TransformConfig, train: bool) -> None:
        self.config = config
        self.train = train
        steps = _train_steps(config) if train else _eval_steps(config)
        # Seeded from torch, so ``seed_everything`` makes augmentation reproducible; workers reseed (``reseed``).
        self.pipeline = A.Compose(steps, seed=torch.initial_seed() % 2**32, additional_targets={"panoptic": "mask"})

    def reseed(self, seed: int) -> None:
        """Give this copy its own random stream; forked loader workers otherwise draw identical augmentations."""
        self.pipeline.set_random_seed(seed % 2**32)

    def random_state(self) -> List[Dict[str, Any]]:
        """Where every random stream of the pipeline stands, as plain data (for checkpoints)."""
        return [{"numpy": t.random_generator.bit_generator.state, "python": t.py_random.getstate()}
                for t in _streams(self.pipeline)]

    def set_random_state(self, state: Sequence[Dict[str, Any]]) -> None:
        """Continue from a ``random_state()`` of the same pipeline."""
        for transform, saved in zip(_streams(self.pipeline), state, strict=True):
            transform.random_generator.bit_generator.state = saved["numpy"]
            transform.py_random.setstate(saved["python"])

    def __call__(self, image: np.ndarray, mask: np.ndarray,
                 panoptic: Optional[np.ndarray] = None) -> Tuple[torch.Tensor, ...]:
        """``(image, mask)``, or ``(image, mask, panoptic)`` when a panoptic id map is given."""
        extra = {} if panoptic is None else {"panoptic": panoptic.astype(np.int32)}
        out = self.pipeline(image=image, mask=mask, **extra)
        image_t = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1)))
        tensors = (image_t, torch.from_numpy(out["mask"].astype(np.int64)))
        return tensors if panoptic is None else tensors + (torch.from_numpy(out["panoptic"].astype(np.int64)),)
