"""Each benchmark read from a hand-made copy in its official layout: images, masks and class ids exactly right."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
from PIL import Image

import fixtures_data as fx
from hyctas_lightning.data import (
    ADE20K_CLASSES,
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    DATASETS,
    ADE20KDataModule,
    CamVidDataModule,
    CityscapesDataModule,
    CocoPanopticDataModule,
    SegmentationDataModule,
    TransformConfig,
    rgb_to_id,
)

PLAIN = TransformConfig()  # evaluation: whole image, normalised, no padding


def normalised(path: Path) -> torch.Tensor:
    """The file decoded by PIL and normalised with ImageNet statistics, as the loaders should return it."""
    rgb = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    mean, std = np.array(PLAIN.mean, np.float32), np.array(PLAIN.std, np.float32)
    return torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1))


def check_split(dm: SegmentationDataModule, split: str, expected: Dict[str, np.ndarray],
                image_path: Dict[str, Path]) -> None:
    """Every sample of ``split``: its mask pixel for pixel, its image to float precision, nothing extra."""
    items = [dm.dataset(split)[k] for k in range(len(dm.dataset(split)))]
    assert sorted(item["name"] for item in items) == sorted(image_path)
    for item in items:
        assert item["mask"].dtype == torch.int64 and item["image"].dtype == torch.float32
        np.testing.assert_array_equal(item["mask"].numpy(), expected[item["name"]], err_msg=item["name"])
        torch.testing.assert_close(item["image"], normalised(image_path[item["name"]]), atol=1e-5, rtol=0)


def test_cityscapes_label_ids_and_train_ids(tmp_path: Path) -> None:
    expected = fx.cityscapes(tmp_path)
    dm = CityscapesDataModule(root=str(tmp_path), transforms=PLAIN)
    image = {name: next(tmp_path.glob(f"leftImg8bit/*/*/{name}_leftImg8bit.png")) for name in expected}
    check_split(dm, "train", expected, {k: v for k, v in image.items() if "frankfurt" not in k})
    check_split(dm, "val", expected, {k: v for k, v in image.items() if "frankfurt" in k})
    assert dm.num_classes == 19 and dm.ignore_index == 255
    assert CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_CLASSES[13] == "car" and CITYSCAPES_CLASSES[18] == "bicycle"
    assert CITYSCAPES_PALETTE[0] == (128, 64, 128) and CITYSCAPES_PALETTE[13] == (0, 0, 142)


def test_ade20k_shifts_labels_and_ignores_other(tmp_path: Path) -> None:
    expected = fx.ade20k(tmp_path)
    dm = ADE20KDataModule(root=str(tmp_path), transforms=PLAIN)
    base = tmp_path / "ADEChallengeData2016" / "images"
    check_split(dm, "train", expected, {"ADE_train_00000001": base / "training" / "ADE_train_00000001.jpg"})
    check_split(dm, "val", expected, {"ADE_val_00000001": base / "validation" / "ADE_val_00000001.jpg"})
    assert dm.num_classes == 150 and len(dm.palette) == 150 and len(set(dm.palette)) == 150
    assert (ADE20K_CLASSES[0], ADE20K_CLASSES[12], ADE20K_CLASSES[149]) == ("wall", "person", "flag")
    assert dm.test_dataloader().dataset is dm.dataset("val")  # no public test labels


def test_camvid_lists(tmp_path: Path) -> None:
    expected = fx.camvid(tmp_path)
    dm = CamVidDataModule(root=str(tmp_path), transforms=PLAIN)
    check_split(dm, "train", expected, {name: tmp_path / "train" / f"{name}.png" for name in
                                        ("0001TP_006690", "0001TP_006720")})
    check_split(dm, "val", expected, {"0016E5_07959": tmp_path / "val" / "0016E5_07959.png"})
    assert dm.classes == CAMVID_CLASSES and len(CAMVID_CLASSES) == 11 and CAMVID_PALETTE[3] == (128, 64, 128)


@pytest.mark.parametrize("png_at_root", [False, True])
def test_coco_panoptic_semantic_view(tmp_path: Path, png_at_root: bool) -> None:
    expected = fx.coco_panoptic(tmp_path, png_at_root=png_at_root)
    dm = CocoPanopticDataModule(root=str(tmp_path), transforms=PLAIN)
    check_split(dm, "train", expected, {"000000000139": tmp_path / "train2017" / "000000000139.jpg"})
    check_split(dm, "val", expected, {"000000000140": tmp_path / "val2017" / "000000000140.jpg"})
    assert dm.classes == ("train", "person", "tree-merged") and dm.num_classes == 3 and len(dm.palette) == 3


def test_coco_segments_stay_reachable(tmp_path: Path) -> None:
    fx.coco_panoptic(tmp_path)
    ids, segments = CocoPanopticDataModule(root=str(tmp_path)).dataset("val").segments(0)
    np.testing.assert_array_equal(ids, fx.COCO_IDS)
    assert segments == fx.COCO_SEGMENTS
    np.testing.assert_array_equal(rgb_to_id(fx.ids_to_rgb(fx.COCO_IDS)), fx.COCO_IDS)


def test_every_dataset_is_registered() -> None:
    assert {name: DATASETS.get(name) for name in ("cityscapes", "ade20k", "camvid", "coco_panoptic")} == {
        "cityscapes": CityscapesDataModule, "ade20k": ADE20KDataModule, "camvid": CamVidDataModule,
        "coco_panoptic": CocoPanopticDataModule}
