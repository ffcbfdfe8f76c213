"""Bad copies fail with errors that name the file (or folder), what is wrong, and the expected layout or fix."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fixtures_data as fx
from hyctas_lightning.data import (
    ADE20KDataModule,
    CamVidDataModule,
    CityscapesDataModule,
    CocoPanopticDataModule,
    DatasetError,
    MissingSplitError,
    TransformConfig,
    check_data,
)

CITY_IMAGE = "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
CITY_LABEL = "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"


def first_train_sample(dm) -> None:
    dm.dataset("train").load(0)


def test_missing_root_shows_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        CityscapesDataModule(root=str(tmp_path / "nowhere"))
    message = str(error.value)
    assert "dataset root not found" in message and str(tmp_path / "nowhere") in message
    assert "Expected layout" in message and "├── leftImg8bit/" in message and "gtFine" in message


@pytest.mark.parametrize("module, build, remove, expected", [
    (CityscapesDataModule, fx.cityscapes, "gtFine/val", "Cityscapes val labels not found"),
    (ADE20KDataModule, fx.ade20k, "ADEChallengeData2016/images/validation", "ADE20K val images not found"),
    (CamVidDataModule, fx.camvid, "val.txt", "CamVid val list not found"),
    (CocoPanopticDataModule, fx.coco_panoptic, "annotations/panoptic_val2017.json", "COCO panoptic val annotations"),
])
def test_missing_split_shows_the_layout(tmp_path: Path, module, build, remove: str, expected: str) -> None:
    build(tmp_path)
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    dm = module(root=str(tmp_path))
    with pytest.raises(MissingSplitError) as error:
        dm.dataset("val")
    assert expected in str(error.value) and str(target) in str(error.value)
    assert "Expected layout (ROOT = " in str(error.value) and "└──" in str(error.value)


def test_empty_split(tmp_path: Path) -> None:
    fx.cityscapes(tmp_path)
    for image in (tmp_path / "leftImg8bit" / "val").rglob("*.png"):
        image.unlink()
    with pytest.raises(DatasetError, match=r"Cityscapes val split .* is empty\nExpected layout"):
        CityscapesDataModule(root=str(tmp_path)).dataset("val")
    (tmp_path / "val.txt").write_text("\n")
    (tmp_path / "train.txt").write_text("")
    with pytest.raises(DatasetError, match=r"CamVid train split .*train.txt\) is empty"):
        CamVidDataModule(root=str(tmp_path)).dataset("train")


def test_image_whose_label_is_missing(tmp_path: Path) -> None:
    fx.cityscapes(tmp_path)
    (tmp_path / CITY_LABEL).unlink()
    with pytest.raises(DatasetError) as error:
        first_train_sample(CityscapesDataModule(root=str(tmp_path)))
    assert f"label missing for image {tmp_path / CITY_IMAGE}: expected {tmp_path / CITY_LABEL}" in str(error.value)


def test_size_mismatch_names_both_files_and_sizes(tmp_path: Path) -> None:
    fx.cityscapes(tmp_path)
    fx.write_image(tmp_path / CITY_LABEL, np.full((5, 6), 7, np.uint8))
    with pytest.raises(DatasetError) as error:
        first_train_sample(CityscapesDataModule(root=str(tmp_path)))
    assert (f"image {tmp_path / CITY_IMAGE} is 6x4 but its label {tmp_path / CITY_LABEL} is 6x5 (width x height)"
            in str(error.value))


@pytest.mark.parametrize("module, build, path", [
    (CityscapesDataModule, fx.cityscapes, CITY_IMAGE),
    (ADE20KDataModule, fx.ade20k, "ADEChallengeData2016/images/training/ADE_train_00000001.jpg"),
])
def test_truncated_image_is_named(tmp_path: Path, module, build, path: str) -> None:
    build(tmp_path)
    data = (tmp_path / path).read_bytes()
    (tmp_path / path).write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=f"cannot read {tmp_path / path}: .*corrupt or truncated"):
        first_train_sample(module(root=str(tmp_path)))


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    fx.camvid(tmp_path)
    (tmp_path / "train" / "0001TP_006690.png").write_text("not an image")
    with pytest.raises(DatasetError, match=f"cannot read {tmp_path / 'train' / '0001TP_006690.png'}"):
        first_train_sample(CamVidDataModule(root=str(tmp_path)))


@pytest.mark.parametrize("module, build, label, values", [
    (CityscapesDataModule, fx.cityscapes, CITY_LABEL, [34, 40]),
    (ADE20KDataModule, fx.ade20k, "ADEChallengeData2016/annotations/training/ADE_train_00000001.png", [151, 200]),
    (CamVidDataModule, fx.camvid, "trainannot/0001TP_006690.png", [11, 12]),
])
def test_label_values_outside_the_known_set(tmp_path: Path, module, build, label: str, values: list) -> None:
    build(tmp_path)
    raw = np.asarray(Image.open(tmp_path / label)).copy()
    raw[0, 0], raw[-1, -1] = values
    fx.write_image(tmp_path / label, raw)
    with pytest.raises(DatasetError, match=rf"label {tmp_path / label} has values \[{values[0]}, {values[1]}\]"):
        first_train_sample(module(root=str(tmp_path)))


def test_cityscapes_train_ids_outside_0_18(tmp_path: Path) -> None:
    fx.cityscapes(tmp_path)
    path = tmp_path / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelTrainIds.png"
    fx.write_image(path, np.full(fx.CITYSCAPES_IDS.shape, 19, np.uint8))
    with pytest.raises(DatasetError, match=r"has values \[19\] outside the known set \(Cityscapes labelTrainIds"):
        CityscapesDataModule(root=str(tmp_path)).dataset("train").load(1)


@pytest.mark.parametrize("segments, in_png, in_json", [
    (fx.COCO_SEGMENTS[:2], "[5000]", "[]"),                                        # PNG id missing from the JSON
    (fx.COCO_SEGMENTS + [{"id": 9, "category_id": 1, "iscrowd": 0}], "[]", "[9]"),  # JSON id missing from the PNG
])
def test_coco_segments_must_match_the_png(tmp_path: Path, segments: list, in_png: str, in_json: str) -> None:
    fx.coco_panoptic(tmp_path)
    path = tmp_path / "annotations" / "panoptic_val2017.json"
    document = json.loads(path.read_text())
    document["annotations"][0]["segments_info"] = segments
    path.write_text(json.dumps(document))
    png = tmp_path / "annotations" / "panoptic_val2017" / "000000000140.png"
    with pytest.raises(DatasetError) as error:
        CocoPanopticDataModule(root=str(tmp_path)).dataset("val").load(0)
    assert f"panoptic PNG {png} does not match its segments_info in {path}" in str(error.value)
    assert f"in the PNG but not in segments_info: {in_png}; in segments_info but not in the PNG: {in_json}" in str(
        error.value)


def test_coco_json_without_a_field(tmp_path: Path) -> None:
    fx.coco_panoptic(tmp_path)
    path = tmp_path / "annotations" / "panoptic_val2017.json"
    document = json.loads(path.read_text())
    del document["annotations"][0]["segments_info"][1]["category_id"]
    path.write_text(json.dumps(document))
    with pytest.raises(DatasetError, match=r"annotations\[0\].segments_info\[1\] has no 'category_id' field"):
        CocoPanopticDataModule(root=str(tmp_path)).dataset("val")


def test_malformed_camvid_list_lines_are_all_listed(tmp_path: Path) -> None:
    fx.camvid(tmp_path)
    with open(tmp_path / "train.txt", "a") as listing:
        listing.write("only_one_path.png\na b c\n")
    with pytest.raises(DatasetError, match=r"line 3: 'only_one_path.png'\n  line 4: 'a b c'"):
        CamVidDataModule(root=str(tmp_path)).dataset("train")


def test_skip_bad_samples_leaves_them_out_and_names_them(tmp_path: Path, caplog) -> None:
    expected = fx.cityscapes(tmp_path)
    (tmp_path / CITY_LABEL).unlink()
    dm = CityscapesDataModule(root=str(tmp_path), transforms=TransformConfig(), skip_bad_samples=True)
    with caplog.at_level(logging.WARNING, logger="hyctas_lightning.data.base"):
        dataset = dm.dataset("train")
        names = [dataset[k]["name"] for k in range(len(dataset))]
    assert names == ["bochum_000000_000313"]  # the bad sample is neither counted nor replaced by another
    np.testing.assert_array_equal(dataset[0]["mask"].numpy(), expected["bochum_000000_000313"])
    assert len(caplog.records) == 1 and str(tmp_path / CITY_LABEL) in caplog.records[0].getMessage()
    assert "left out 1 of 2 samples of the train split" in caplog.records[0].getMessage()
    assert dataset.skipped and "label missing" in dataset.skipped[0]
    with pytest.raises(DatasetError, match="label missing"):  # without the option, the same sample raises
        CityscapesDataModule(root=str(tmp_path)).dataset("train")[0]
    report = check_data(dm)  # data check still lists what the option leaves out
    assert report.splits["train"].samples == 2 and report.splits["train"].bad == 1


def test_a_skipped_sample_is_not_counted_in_place_of_another(tmp_path: Path) -> None:
    """A split [bad, A, B] serves exactly what the split [A, B] serves, once each."""
    fx.camvid(tmp_path)
    image, label = "val/0016E5_07959.png", "valannot/0016E5_07959.png"
    for name in ("0016E5_08000", "broken"):
        shutil.copy(tmp_path / image, tmp_path / f"val/{name}.png")
        shutil.copy(tmp_path / label, tmp_path / f"valannot/{name}.png")
    (tmp_path / "val/broken.png").write_bytes(b"not a png")
    good = [f"val/{n}.png valannot/{n}.png" for n in ("0016E5_07959", "0016E5_08000")]
    served = {}
    for listing in (["val/broken.png valannot/broken.png", *good], good):
        (tmp_path / "val.txt").write_text("\n".join(listing) + "\n")
        loader = CamVidDataModule(root=str(tmp_path), skip_bad_samples=True, batch_size=2).val_dataloader()
        served[len(listing)] = [(name, mask.tolist()) for batch in loader
                                for name, mask in zip(batch["name"], batch["mask"])]
    assert [name for name, _ in served[3]] == ["0016E5_07959", "0016E5_08000"]
    assert served[3] == served[2]


def test_skip_bad_samples_gives_up_when_nothing_is_good(tmp_path: Path) -> None:
    fx.camvid(tmp_path)
    for label in (tmp_path / "valannot").glob("*.png"):
        label.unlink()
    with pytest.raises(DatasetError, match="every sample of the val split is bad"):
        CamVidDataModule(root=str(tmp_path), skip_bad_samples=True).dataset("val")[0]
