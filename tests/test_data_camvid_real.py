"""The real CamVid copy (``../shared/datasets/camvid``): it loads, and ``data check`` counts what numpy counts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fixtures_data import camvid_root  # noqa: F401  (pytest fixture)
from hyctas_lightning.data import CamVidDataModule, TransformConfig, check_data


def label_paths(root: Path, split: str) -> list[Path]:
    return [root / line.split()[1] for line in (root / f"{split}.txt").read_text().splitlines() if line.strip()]


def test_check_histogram_matches_a_direct_count(camvid_root: Path) -> None:
    report = check_data(CamVidDataModule(root=str(camvid_root)), num_workers=2)
    assert report.ok, report.problems
    assert report.absent == ["test"] or "test" in report.splits
    for split in ("train", "val"):
        labels = label_paths(camvid_root, split)
        counts = sum(np.bincount(np.asarray(Image.open(p)).ravel(), minlength=256) for p in labels)
        assert report.splits[split].samples == len(labels)
        np.testing.assert_array_equal(report.splits[split].pixels, counts[:11])
        assert report.splits[split].ignored == counts[255]
        assert counts[11:255].sum() == 0


def test_samples_and_batches(camvid_root: Path) -> None:
    dm = CamVidDataModule(root=str(camvid_root), transforms=TransformConfig(), batch_size=4)
    val = dm.dataset("val")
    for index in (0, len(val) - 1):
        item = val[index]
        raw = np.asarray(Image.open(label_paths(camvid_root, "val")[index]))
        np.testing.assert_array_equal(item["mask"].numpy(), raw)  # identity mapping, 255 kept
        assert item["image"].shape == (3, 360, 480)
    train = CamVidDataModule(root=str(camvid_root), batch_size=4, max_samples=8).train_dataloader()
    batch = next(iter(train))
    assert batch["image"].shape == (4, 3, 352, 480) and batch["mask"].shape == (4, 352, 480)
    assert len(train.dataset) == 8
