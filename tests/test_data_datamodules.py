"""The shared DataModule base: loader options, ``max_samples`` subsets, padding collate, worker seeding, splits."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fixtures_data as fx
from hyctas_lightning.data import CamVidDataModule, MissingSplitError, SyntheticStreetDataModule, TransformConfig
from hyctas_lightning.data.base import deterministic_subset, pad_collate


def test_loader_options(tmp_path: Path) -> None:
    fx.camvid(tmp_path)
    dm = CamVidDataModule(root=str(tmp_path), batch_size=1, num_workers=2, pin_memory=True)
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert train.num_workers == 2 and train.persistent_workers and train.drop_last
    assert not val.drop_last and val.batch_size == 1
    assert train.pin_memory == torch.cuda.is_available()  # pinning needs a CUDA device
    serial = CamVidDataModule(root=str(tmp_path), batch_size=1, num_workers=0).train_dataloader()
    assert not serial.persistent_workers and serial.worker_init_fn is None


def test_max_samples_is_a_fixed_spread_subset() -> None:
    picked = deterministic_subset(1000, 10)
    assert picked == deterministic_subset(1000, 10) and picked == sorted(set(picked)) and len(picked) == 10
    assert picked != list(range(10)) and max(picked) > 500  # spread over the split, not its first files
    assert deterministic_subset(5, 10) == list(range(5)) and deterministic_subset(5, None) == list(range(5))
    with pytest.raises(ValueError, match="max_samples"):
        deterministic_subset(5, 0)


def test_max_samples_caps_every_split(tmp_path: Path) -> None:
    fx.camvid(tmp_path)
    dm = CamVidDataModule(root=str(tmp_path), max_samples=1, transforms=TransformConfig())
    assert len(dm.dataset("train")) == 1 and len(dm.dataset("val")) == 1
    assert dm.dataset("train")[0]["name"] == CamVidDataModule(root=str(tmp_path), max_samples=1).dataset(
        "train")[0]["name"]


def test_pad_collate_pads_images_with_zero_and_masks_with_ignore() -> None:
    small = {"image": torch.ones(3, 2, 3), "mask": torch.zeros(2, 3, dtype=torch.int64), "name": "a"}
    large = {"image": torch.ones(3, 4, 2), "mask": torch.ones(4, 2, dtype=torch.int64), "name": "b"}
    batch = pad_collate([small, large])
    assert batch["image"].shape == (2, 3, 4, 3) and batch["name"] == ["a", "b"]
    assert (batch["mask"][0, 2:] == 255).all() and (batch["mask"][0, :2] == 0).all()
    assert (batch["mask"][1, :, 2:] == 255).all() and (batch["image"][1, :, :, 2:] == 0).all()


def test_workers_draw_different_augmentations(tmp_path: Path) -> None:
    """Forked workers copy one random state; each must be reseeded or they crop and jitter alike."""
    fx.write_image(tmp_path / "train" / "a.png", fx.random_image(64, 64, 0))
    fx.write_image(tmp_path / "trainannot" / "a.png", np.zeros((64, 64), np.uint8))
    (tmp_path / "train.txt").write_text("train/a.png trainannot/a.png\n" * 4)
    dm = CamVidDataModule(root=str(tmp_path), batch_size=1, num_workers=2, transforms=TransformConfig(
        crop_size=(16, 16), color_jitter=0.3))
    first, second = [batch["image"] for _, batch in zip(range(2), dm.train_dataloader())]  # worker 0, worker 1
    assert not torch.equal(first, second)


def test_test_split_choice(tmp_path: Path) -> None:
    fx.camvid(tmp_path)
    assert CamVidDataModule(root=str(tmp_path)).test_split == "val"
    with pytest.raises(MissingSplitError, match="CamVid test list not found"):
        CamVidDataModule(root=str(tmp_path), test_split="test").test_dataloader()
    with pytest.raises(ValueError, match="test_split 'holdout' is not a split of CamVidDataModule"):
        CamVidDataModule(root=str(tmp_path), test_split="holdout")


def test_synthetic_data_takes_the_shared_options() -> None:
    dm = SyntheticStreetDataModule(size=(48, 64), batch_size=2, max_samples=2,
                                   transforms=TransformConfig(crop_size=(32, 32), scale_range=(0.5, 2.0)))
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["mask"].shape == (2, 32, 32)
    assert dm.test_split == "test" and len(dm.test_dataloader().dataset) == 2


def test_epoch_repeats_make_one_epoch_of_several_shuffled_passes(tmp_path: Path) -> None:
    """A small split in large batches: one epoch (one loader pass, one pipeline start) holds several passes."""
    fx.camvid(tmp_path)
    dm = CamVidDataModule(root=str(tmp_path), batch_size=1, epoch_repeats=3, transforms=TransformConfig())
    loader = dm.train_dataloader()
    n = len(dm.dataset("train", train=True))
    assert len(loader) == 3 * n
    names = [name for batch in loader for name in batch["name"]]
    assert sorted(names) == sorted(names[:n] * 3)  # every sample once per pass
    assert len(CamVidDataModule(root=str(tmp_path), batch_size=1).train_dataloader()) == n
    assert len(dm.val_dataloader()) == len(dm.dataset("val"))  # evaluation splits are read once
    with pytest.raises(ValueError, match="epoch_repeats"):
        CamVidDataModule(root=str(tmp_path), epoch_repeats=0)
