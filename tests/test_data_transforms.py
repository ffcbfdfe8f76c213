"""Augmentation keeps image and mask aligned, produces the crop size, and pads masks with the ignore label."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hyctas_lightning.data import SegmentationTransform, TransformConfig

COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 20], [20, 230, 230]], np.uint8)
MEAN = np.array(TransformConfig().mean, np.float32)
STD = np.array(TransformConfig().std, np.float32)


def blocks(height: int = 60, width: int = 90, cell: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A mask of random classes in square cells and an image painting each class its own colour."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, len(COLOURS), (height // cell + 1, width // cell + 1))
    mask = np.kron(cells, np.ones((cell, cell), np.int64))[:height, :width].astype(np.uint8)
    return COLOURS[mask], mask


def classes_seen(image: torch.Tensor) -> np.ndarray:
    """Undo the normalisation and name each pixel's class by its nearest colour."""
    rgb = (image.numpy().transpose(1, 2, 0) * STD + MEAN) * 255.0
    return np.abs(rgb[:, :, None, :] - COLOURS[None, None].astype(np.float32)).sum(-1).argmin(-1)


def test_eval_without_padding_is_exact() -> None:
    image, mask = blocks()
    out_image, out_mask = SegmentationTransform(TransformConfig(), train=False)(image, mask)
    assert out_image.shape == (3, 60, 90) and out_mask.dtype == torch.int64
    np.testing.assert_array_equal(out_mask.numpy(), mask)
    expected = (image.astype(np.float32) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(out_image.numpy().transpose(1, 2, 0), expected, atol=1e-5)


def test_eval_padding_to_a_multiple_uses_the_ignore_label() -> None:
    image, mask = blocks(50, 70)
    out_image, out_mask = SegmentationTransform(TransformConfig(pad_to_multiple=32), train=False)(image, mask)
    assert out_mask.shape == (64, 96) and out_image.shape == (3, 64, 96)
    np.testing.assert_array_equal(out_mask[:50, :70].numpy(), mask)  # original at the top left, untouched
    assert (out_mask[50:] == 255).all() and (out_mask[:, 70:] == 255).all()
    assert (out_image[:, 50:] == 0).all() and (out_image[:, :, 70:] == 0).all()  # the normalised mean


def test_train_crop_flip_keep_image_and_mask_aligned() -> None:
    image, mask = blocks()
    config = TransformConfig(crop_size=(48, 64), hflip=True)
    transform = SegmentationTransform(config, train=True)
    flips = 0
    for _ in range(12):
        out_image, out_mask = transform(image, mask)
        assert out_image.shape == (3, 48, 64) and out_mask.shape == (48, 64)
        np.testing.assert_array_equal(classes_seen(out_image), out_mask.numpy())
        flips += not any(np.array_equal(out_mask.numpy(), mask[y:y + 48, x:x + 64])
                         for y in range(13) for x in range(27))
    assert 0 < flips < 12  # flipped sometimes, not always


def test_train_scaling_and_padding() -> None:
    """Scaled down below the crop, the rest is padding: ignore in the mask, the mean (0) in the image."""
    image, mask = blocks(40, 40)
    transform = SegmentationTransform(TransformConfig(crop_size=(64, 64), scale_range=(0.5, 2.0), hflip=False),
                                      train=True)
    padded = 0
    for _ in range(10):
        out_image, out_mask = transform(image, mask)
        assert out_image.shape == (3, 64, 64) and out_mask.shape == (64, 64)
        pad = out_mask == 255
        if pad.any():
            padded += 1
            assert out_image[:, pad].abs().max() < 0.01
        agree = classes_seen(out_image)[~pad.numpy()] == out_mask[~pad].numpy()
        assert agree.mean() > 0.9  # only resampled cell edges may disagree
    assert padded > 0


def test_colour_jitter_changes_the_image_only() -> None:
    image, mask = blocks()
    plain = SegmentationTransform(TransformConfig(hflip=False), train=True)(image, mask)
    jittered = SegmentationTransform(TransformConfig(hflip=False, color_jitter=0.4), train=True)(image, mask)
    assert torch.equal(plain[1], jittered[1])
    assert (plain[0] - jittered[0]).abs().mean() > 0.05


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="scale_range"):
        TransformConfig(scale_range=(2.0, 0.5))
    with pytest.raises(ValueError, match="crop_size"):
        TransformConfig(crop_size=(0, 64))
    with pytest.raises(ValueError, match="pad_to_multiple"):
        TransformConfig(pad_to_multiple=0)
