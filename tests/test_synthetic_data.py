"""The embedded street scenes: deterministic, varied, and not solvable by colour or position alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hyctas_lightning.data import (
    DATASETS,
    SYNTHETIC_CLASSES,
    SYNTHETIC_PALETTE,
    SyntheticStreetDataModule,
    SyntheticStreets,
    render_scene,
)

SIZE = (64, 128)  # small scenes keep the statistical checks fast
NUM_CLASSES = len(SYNTHETIC_CLASSES)


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, np.ndarray]]:
    return [render_scene(seed, SIZE) for seed in range(50)]


def test_render_is_deterministic_per_seed() -> None:
    image_a, mask_a = render_scene(7, SIZE)
    image_b, mask_b = render_scene(7, SIZE)
    image_c, mask_c = render_scene(8, SIZE)
    assert np.array_equal(image_a, image_b) and np.array_equal(mask_a, mask_b)
    assert not np.array_equal(image_a, image_c) and not np.array_equal(mask_a, mask_c)


def test_render_shapes_and_dtypes() -> None:
    image, mask = render_scene(0, (96, 160))
    assert image.shape == (96, 160, 3) and image.dtype == np.uint8
    assert mask.shape == (96, 160) and mask.dtype == np.uint8
    assert mask.max() < NUM_CLASSES
    assert len(SYNTHETIC_PALETTE) == NUM_CLASSES >= 7


def test_every_class_appears_often(scenes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    present = np.zeros(NUM_CLASSES)
    for _, mask in scenes:
        present += np.bincount(mask.ravel(), minlength=NUM_CLASSES)[:NUM_CLASSES] > 0
    share = present / len(scenes)
    assert (share >= 0.1).all(), dict(zip(SYNTHETIC_CLASSES, share))


def test_colour_alone_does_not_solve_it(scenes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    fit, held_out = scenes[:30], scenes[30:40]
    pixels = np.concatenate([image.reshape(-1, 3) for image, _ in fit]).astype(np.float64)
    labels = np.concatenate([mask.ravel() for _, mask in fit])
    means = np.stack([pixels[labels == k].mean(0) for k in range(NUM_CLASSES)])
    correct = total = 0
    for image, mask in held_out:
        distance = ((image.reshape(-1, 1, 3).astype(np.float64) - means[None]) ** 2).sum(-1)
        correct += (distance.argmin(1) == mask.ravel()).sum()
        total += mask.size
    assert correct / total < 0.8


def test_position_alone_does_not_solve_it(scenes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    fit = np.stack([mask for _, mask in scenes[:30]])
    counts = np.stack([(fit == k).sum(0) for k in range(NUM_CLASSES)])
    majority = counts.argmax(0)
    held_out = np.stack([mask for _, mask in scenes[30:40]])
    assert (held_out == majority[None]).mean() < 0.8


def test_dataset_items_and_splits() -> None:
    train = SyntheticStreets(4, SIZE, seed=3, split="train")
    val = SyntheticStreets(4, SIZE, seed=3, split="val")
    item = train[0]
    assert item["image"].shape == (3, *SIZE) and item["image"].dtype == torch.float32
    assert item["mask"].shape == SIZE and item["mask"].dtype == torch.int64
    assert isinstance(item["name"], str)
    assert abs(item["image"].mean().item()) < 2.0  # ImageNet-normalised, not raw 0..255
    assert torch.equal(item["image"], train[0]["image"])
    assert not torch.equal(item["mask"], val[0]["mask"])
    assert train.num_classes == NUM_CLASSES and train.ignore_index == 255
    with pytest.raises(IndexError):
        train[4]


def test_train_flip_keeps_image_and_mask_aligned() -> None:
    plain = SyntheticStreets(1, SIZE, seed=1)[0]
    torch.manual_seed(0)
    flipped = [SyntheticStreets(1, SIZE, seed=1, train_transform=True)[0] for _ in range(8)]
    for item in flipped:
        same = torch.equal(item["mask"], plain["mask"])
        mirrored = torch.equal(item["mask"], plain["mask"].flip(-1))
        assert same or mirrored
        expected = plain["image"] if same else plain["image"].flip(-1)
        assert torch.allclose(item["image"], expected)


def test_datamodule_batches_and_cap() -> None:
    dm = SyntheticStreetDataModule(size=SIZE, batch_size=4, max_samples=6)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, *SIZE) and batch["mask"].shape == (4, *SIZE)
    assert len(dm.train_dataloader().dataset) == 6
    assert len(dm.val_dataloader().dataset) == 6 and len(dm.test_dataloader().dataset) == 6
    assert len(dm.predict_dataloader().dataset) == 6
    assert dm.num_classes == NUM_CLASSES and dm.ignore_index == 255
    assert list(dm.classes) == list(SYNTHETIC_CLASSES) and len(dm.palette) == NUM_CLASSES
    assert dm.hparams.max_samples == 6


def test_datamodule_is_registered() -> None:
    assert "synthetic" in DATASETS
    assert DATASETS.get("synthetic") is SyntheticStreetDataModule
