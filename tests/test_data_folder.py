"""Your own data (``FolderDataModule``): hand-made folders in every layout and mask style decode to the ids written
by hand, bad files and bad settings fail with one line naming the file or field, and ``hyctas data check`` lists
counts, histogram, class weights and every problem."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
from PIL import Image

import fixtures_data as fx
from hyctas_lightning.cli import main
from hyctas_lightning.data import (
    DATASETS,
    DatasetError,
    FolderDataModule,
    MissingSplitError,
    SplitReport,
    TransformConfig,
    build_datamodule,
    check_data,
    datamodule_spec,
)
from make_folder_dataset import write_folder_dataset

ROOT = Path(__file__).resolve().parents[1]
PLAIN = TransformConfig()  # whole images, normalised
X = 255
CLASSES = ["road", "car", "person"]
PALETTE = [[128, 64, 128], [0, 0, 142], [220, 20, 60]]
BLACK = [0, 0, 0]
# ids written by hand, one mask per sample; 255 is unlabelled
MASKS = {("train", "a"): np.array([[0, 0, 1, 1], [2, X, 1, 0], [0, 0, 0, 2]], np.uint8),
         ("train", "cam1/b"): np.array([[2, 2, 2, 2], [1, 1, X, X], [0, 1, 2, 0]], np.uint8),
         ("val", "c"): np.array([[1, 0, 0, 0], [0, 0, 0, 0], [X, X, 2, 1]], np.uint8)}


def paint(ids: np.ndarray) -> np.ndarray:
    """The ids as RGB colours of PALETTE, black unlabelled, written here independently of the loader."""
    rgb = np.zeros((*ids.shape, 3), np.uint8)
    for k, colour in enumerate(PALETTE):
        rgb[ids == k] = colour
    return rgb


def write_folder(root: Path, rgb: bool = False, mask_dir: str = "masks/{split}", image_dir: str = "images/{split}",
                 indexed: bool = False) -> Dict[str, np.ndarray]:
    """Images as JPEG and masks as PNG for MASKS; ids as single-channel (or palette-indexed) PNGs, or colours."""
    for seed, ((split, name), ids) in enumerate(MASKS.items()):
        fx.write_image(root / image_dir.format(split=split) / f"{name}.jpg", fx.random_image(*ids.shape, seed))
        mask = root / mask_dir.format(split=split) / f"{name}.png"
        if rgb:
            fx.write_image(mask, paint(ids))
        elif indexed:
            mask.parent.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(ids).convert("P")
            image.putpalette([v for colour in PALETTE for v in colour] * 85 + [0, 0, 0])
            image.save(mask)
        else:
            fx.write_image(mask, ids)
    return {name: ids for (_, name), ids in MASKS.items()}


def decoded(dm: FolderDataModule, split: str) -> Dict[str, np.ndarray]:
    dataset = dm.dataset(split)
    return {dataset[k]["name"]: dataset[k]["mask"].numpy() for k in range(len(dataset))}


def assert_decodes(dm: FolderDataModule, expected: Dict[str, np.ndarray]) -> None:
    found = {**decoded(dm, "train"), **decoded(dm, "val")}
    assert sorted(found) == sorted(expected)
    for name, ids in expected.items():
        np.testing.assert_array_equal(found[name], ids, err_msg=name)


@pytest.mark.parametrize("indexed", [False, True], ids=["single-channel", "palette-indexed"])
def test_index_masks_in_split_folders(tmp_path: Path, indexed: bool) -> None:
    expected = write_folder(tmp_path, indexed=indexed)
    dm = FolderDataModule(root=str(tmp_path), classes=CLASSES, transforms=PLAIN)
    assert_decodes(dm, expected)
    assert "cam1/b" in decoded(dm, "train")  # sub-folders are part of the name
    assert dm.classes == tuple(CLASSES) and dm.num_classes == 3 and dm.ignore_index == 255
    assert len(dm.palette) == 3 and len(set(dm.palette)) == 3  # generated, since none was given
    item = dm.dataset("val")[0]
    assert item["image"].shape == (3, 3, 4) and item["image"].dtype == torch.float32


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_rgb_masks_decode_through_the_palette_of_a_classes_file(tmp_path: Path, suffix: str) -> None:
    expected = write_folder(tmp_path, rgb=True, mask_dir="colours/{split}")
    content = {"classes": CLASSES, "palette": PALETTE}
    (tmp_path / f"meta{suffix}").write_text(json.dumps(content))  # JSON is valid YAML too
    dm = FolderDataModule(root=str(tmp_path), classes=f"meta{suffix}", mask_dir="colours/{split}", mask_format="rgb",
                          ignore_colours=[BLACK], transforms=PLAIN)
    assert_decodes(dm, expected)
    assert dm.palette == [tuple(c) for c in PALETTE]


def test_split_lists_over_one_folder(tmp_path: Path) -> None:
    expected = write_folder(tmp_path, image_dir="all/images", mask_dir="all/masks")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("# training scenes\na\n\ncam1/b\n")
    (tmp_path / "splits" / "val.txt").write_text("c\n")
    dm = FolderDataModule(root=str(tmp_path), classes=CLASSES, image_dir="all/images", mask_dir="all/masks",
                          split_list="splits/{split}.txt", transforms=PLAIN)
    assert sorted(decoded(dm, "train")) == ["a", "cam1/b"]
    assert_decodes(dm, expected)
    report = check_data(dm)
    assert report.ok and report.absent == ["test"]
    (tmp_path / "splits" / "val.txt").write_text("c\nc\n")
    with pytest.raises(DatasetError, match=r"val.txt: line 2 repeats 'c' \(first on line 1\)"):
        FolderDataModule(root=str(tmp_path), classes=CLASSES, image_dir="all/images", mask_dir="all/masks",
                         split_list="splits/{split}.txt").dataset("val")


def test_images_and_masks_in_one_folder_by_suffix(tmp_path: Path) -> None:
    for split, name, ids in [("train", "a", MASKS[("train", "a")]), ("val", "c", MASKS[("val", "c")])]:
        fx.write_image(tmp_path / split / f"{name}.png", fx.random_image(*ids.shape, 0))
        fx.write_image(tmp_path / split / f"{name}_mask.png", ids)  # also ends with the images' suffix
    dm = FolderDataModule(root=str(tmp_path), classes=CLASSES, image_dir="{split}", mask_dir="{split}",
                          image_suffix=".png", mask_suffix="_mask.png", transforms=PLAIN)
    assert_decodes(dm, {"a": MASKS[("train", "a")], "c": MASKS[("val", "c")]})


def test_missing_split_folder_shows_the_configured_layout(tmp_path: Path) -> None:
    write_folder(tmp_path, mask_dir="labels/{split}")
    shutil.rmtree(tmp_path / "labels" / "val")
    dm = FolderDataModule(root=str(tmp_path), classes=CLASSES, mask_dir="labels/{split}")
    with pytest.raises(MissingSplitError) as error:
        dm.dataset("val")
    assert f"val masks not found: {tmp_path / 'labels' / 'val'}" in str(error.value)
    assert "└── labels/{split}/NAME.png" in str(error.value)  # the layout as configured, not the default
    report = check_data(dm)
    assert report.absent == ["test"] and report.problems[0].startswith("val: val masks not found")


def test_label_map_renumbers_raw_ids(tmp_path: Path) -> None:
    raw = np.array([[10, 20, 30], [40, 0, 10]], np.uint8)
    fx.write_image(tmp_path / "images" / "train" / "a.jpg", fx.random_image(2, 3, 0))
    fx.write_image(tmp_path / "masks" / "train" / "a.png", raw)
    # 10 -> road, 20 -> car, 30 and 40 ignored (null, 255), 0 is the ignore_index itself
    dm = FolderDataModule(root=str(tmp_path), classes=["road", "car"], ignore_index=0,
                          label_map={10: 0, 20: 1, 30: None, 40: 255}, transforms=PLAIN)
    np.testing.assert_array_equal(dm.dataset("train")[0]["mask"].numpy(), [[0, 1, X], [X, X, 0]])
    fx.write_image(tmp_path / "masks" / "train" / "a.png", np.full((2, 3), 50, np.uint8))
    with pytest.raises(DatasetError, match=r"has values \[50\] outside the known set \(the raw ids of label_map "
                                           r"\[10, 20, 30, 40\] and 0 = ignore\)\. Add the id to label_map"):
        dm.dataset("train").load(0)


def one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    return text


def test_unknown_colour(tmp_path: Path) -> None:
    write_folder(tmp_path, rgb=True)
    mask = tmp_path / "masks" / "train" / "a.png"
    painted = paint(MASKS[("train", "a")])
    painted[0, 0], painted[0, 1] = (1, 2, 3), (250, 0, 0)
    fx.write_image(mask, painted)
    dm = FolderDataModule(root=str(tmp_path), classes=CLASSES, palette=PALETTE, mask_format="rgb",
                          ignore_colours=[BLACK])
    with pytest.raises(DatasetError) as error:
        dm.dataset("train").load(0)
    assert one_line(error).startswith(f"label {mask} has colours (1, 2, 3), (250, 0, 0) that are not in the palette")
    assert "ignore_colours" in str(error.value)


def test_id_outside_the_classes(tmp_path: Path) -> None:
    write_folder(tmp_path)
    mask = tmp_path / "masks" / "val" / "c.png"
    ids = MASKS[("val", "c")].copy()
    ids[1, 1] = 3
    fx.write_image(mask, ids)
    with pytest.raises(DatasetError) as error:
        FolderDataModule(root=str(tmp_path), classes=CLASSES).dataset("val").load(0)
    assert one_line(error) == (f"label {mask} has values [3] outside the known set (class ids 0..2 and 255 = "
                               "ignore). Fix the mask, or map its ids to classes with label_map (raw id: class id)")


def test_mask_without_its_image_and_image_without_its_mask(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / "images" / "train" / "a.jpg").unlink()
    (tmp_path / "masks" / "train" / "cam1" / "b.png").unlink()
    dataset = FolderDataModule(root=str(tmp_path), classes=CLASSES).dataset("train")
    assert len(dataset) == 2  # the mask without its image is a sample, which reports it
    with pytest.raises(DatasetError) as error:
        dataset.load(0)
    image, mask = tmp_path / "images" / "train" / "a.jpg", tmp_path / "masks" / "train" / "a.png"
    assert one_line(error) == f"mask {mask} has no image: expected {image}. Add the image or remove the mask"
    with pytest.raises(DatasetError) as error:
        dataset.load(1)
    assert one_line(error).startswith(f"label missing for image {tmp_path / 'images' / 'train' / 'cam1' / 'b.jpg'}")


@pytest.mark.parametrize("rgb", [False, True], ids=["index", "rgb"])
def test_size_mismatch(tmp_path: Path, rgb: bool) -> None:
    write_folder(tmp_path, rgb=rgb)
    mask = tmp_path / "masks" / "val" / "c.png"
    fx.write_image(mask, paint(np.zeros((3, 5), np.uint8)) if rgb else np.zeros((3, 5), np.uint8))
    options = {"palette": PALETTE, "mask_format": "rgb", "ignore_colours": [BLACK]} if rgb else {}
    with pytest.raises(DatasetError) as error:
        FolderDataModule(root=str(tmp_path), classes=CLASSES, **options).dataset("val").load(0)
    assert one_line(error).startswith(f"size mismatch: image {tmp_path / 'images' / 'val' / 'c.jpg'} is 4x3 but its "
                                      f"label {mask} is 5x3")


def test_skip_bad_samples_goes_on_with_the_next(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / "images" / "train" / "a.jpg").unlink()
    dm = FolderDataModule(root=str(tmp_path), classes=CLASSES, skip_bad_samples=True, transforms=PLAIN)
    assert dm.dataset("train")[0]["name"] == "cam1/b"


@pytest.mark.parametrize("options, message", [
    ({"classes": "missing.yaml"}, "classes file not found: {root}/missing.yaml"),
    ({"classes": CLASSES, "palette": PALETTE[:2]}, "palette: 2 colours for 3 classes"),
    ({"classes": ["road", "car", "road"]}, "classes: class names ['road'] appear more than once"),
    ({"classes": CLASSES, "palette": [[0, 0, 300], *PALETTE[1:]]}, "palette: entry 0 is [0, 0, 300]"),
    ({"classes": CLASSES, "mask_format": "rgb"}, "mask_format rgb: masks are decoded through the palette, but none"),
    ({"classes": CLASSES, "mask_format": "colour"}, "mask_format: one of ['index', 'rgb'], got 'colour'"),
    ({"classes": CLASSES, "palette": [BLACK, BLACK, PALETTE[2]], "mask_format": "rgb"},
     "palette: colours [(0, 0, 0)] stand for more than one class"),
    ({"classes": CLASSES, "ignore_index": 2}, "ignore_index 2 is also the id of class 2 of 3"),
    ({"classes": CLASSES, "label_map": {7: 3}}, "label_map: raw id 7 maps to 3, but the classes are 0..2"),
    ({"classes": CLASSES, "palette": PALETTE, "mask_format": "rgb", "label_map": {1: 0}},
     "label_map: maps the ids of index masks"),
    ({"classes": CLASSES, "image_dir": "images"}, "image_dir 'images' and mask_dir 'masks/{split}' must both contain"),
    ({"classes": CLASSES, "mask_dir": "images/{split}", "mask_suffix": ".jpg"}, "images and masks are both"),
])
def test_bad_settings_name_the_field(tmp_path: Path, options: dict, message: str) -> None:
    write_folder(tmp_path)
    with pytest.raises(ValueError) as error:
        FolderDataModule(root=str(tmp_path), **options)
    assert message.replace("{root}", str(tmp_path)) in one_line(error)


def test_bad_classes_files_are_named(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / "classes.yaml").write_text("classes: [road, car]\npalette: [[1, 2, 3]]\n")
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'classes.yaml'} \(palette\): 1 colours for 2 classes"):
        FolderDataModule(root=str(tmp_path))
    (tmp_path / "classes.yaml").write_text("names: [road]\n")
    with pytest.raises(DatasetError, match="expected a list of class names, or a mapping with 'classes'"):
        FolderDataModule(root=str(tmp_path))
    (tmp_path / "classes.json").write_text("[\"road\",")
    with pytest.raises(DatasetError, match=f"cannot parse {tmp_path / 'classes.json'}"):
        FolderDataModule(root=str(tmp_path), classes="classes.json")


def test_registered_by_name_and_rebuilt_from_its_spec(tmp_path: Path) -> None:
    expected = write_folder(tmp_path, rgb=True)
    args = {"root": str(tmp_path), "classes": list(CLASSES), "palette": [list(c) for c in PALETTE],
            "mask_format": "rgb", "ignore_colours": [list(BLACK)], "transforms": {"crop_size": None}}
    assert DATASETS.get("folder") is FolderDataModule
    for path in ("folder", "hyctas_lightning.data.FolderDataModule"):
        dm = build_datamodule({"class_path": path, "init_args": args})
        assert isinstance(dm, FolderDataModule)
    spec = datamodule_spec(dm)  # what a supernet checkpoint carries, for the search to rebuild the data
    assert spec["class_path"] == "folder" and spec["init_args"]["mask_format"] == "rgb"
    rebuilt = build_datamodule(spec)
    assert rebuilt.classes == tuple(CLASSES) and rebuilt.palette == dm.palette
    assert_decodes(rebuilt, expected)


def test_training_batches_take_the_shared_transforms(tmp_path: Path) -> None:
    write_folder(tmp_path)
    dm = FolderDataModule(root=str(tmp_path), classes=CLASSES, batch_size=2, max_samples=2,
                          transforms=TransformConfig(crop_size=(8, 8), pad_to_multiple=8))
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 8, 8) and batch["mask"].shape == (2, 8, 8)
    assert (batch["mask"][:, 3:] == 255).all()  # 3-row images padded up to the crop with the ignore label
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (1, 3, 8, 8) and val["image_size"] == [(3, 4)]


def test_class_weights_are_median_frequency() -> None:
    report = SplitReport(samples=1, pixels=np.array([10, 30, 0, 60], np.int64))
    np.testing.assert_allclose(report.class_weights, [3.0, 1.0, 0.0, 0.5])  # median share 0.3 over each share


def test_example_folder_has_both_mask_styles_alike(tmp_path: Path) -> None:
    masks = write_folder_dataset(tmp_path / "data", {"train": 3, "val": 1}, size=(32, 48))
    index = FolderDataModule(root=str(tmp_path / "data"), transforms=PLAIN)
    rgb = FolderDataModule(root=str(tmp_path / "data"), mask_dir="masks_rgb/{split}", mask_format="rgb",
                           ignore_colours=[BLACK], transforms=PLAIN)
    for split in ("train", "val"):
        found = decoded(index, split)
        assert found.keys() == decoded(rgb, split).keys() == {n.split("/", 1)[1] for n in masks if n.startswith(split)}
        for name, ids in found.items():
            np.testing.assert_array_equal(ids, masks[f"{split}/{name}"])
            np.testing.assert_array_equal(decoded(rgb, split)[name], ids)
    assert index.num_classes == 8 and index.palette[0] == (128, 64, 128)
    write_folder_dataset(tmp_path / "data", {"train": 1, "val": 1}, size=(32, 48))  # an example is replaced
    with pytest.raises(FileExistsError, match="holds other files"):
        write_folder_dataset(tmp_path, {"train": 1, "val": 1})  # anything else is not


def test_data_check_with_the_shipped_config_lists_everything(tmp_path: Path, capsys) -> None:
    write_folder(tmp_path)
    (tmp_path / "classes.yaml").write_text(json.dumps({"classes": CLASSES, "palette": PALETTE}))
    config = ROOT / "configs" / "data" / "folder.yaml"
    args = ["data", "check", "--config", str(config), "--data.init_args.root", str(tmp_path), "--num_workers", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"dataset: FolderDataModule at {tmp_path}" in out and "0 problem(s)" in out
    train_pixels = np.bincount(np.concatenate([MASKS[("train", "a")].ravel(), MASKS[("train", "cam1/b")].ravel()]))
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["train"] == ["2", "0", str(train_pixels[:3].sum()), str(train_pixels[255])]  # samples, bad, px
    assert rows["1"][:2] == ["car", str(train_pixels[1])] and rows["2"][:2] == ["person", str(train_pixels[2])]
    assert "suggested class weights (median frequency of the train pixels, for a weighted loss): [" in out

    (tmp_path / "images" / "train" / "a.jpg").unlink()                       # a mask without its image
    fx.write_image(tmp_path / "masks" / "train" / "cam1" / "b.png", np.full((3, 4), 7, np.uint8))  # an id too many
    fx.write_image(tmp_path / "masks" / "val" / "c.png", np.zeros((2, 4), np.uint8))                # a size mismatch
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "3 problem(s):" in out
    problems = out.split("3 problem(s):\n", 1)[1].splitlines()
    assert problems[0] == (f"  - train: mask {tmp_path / 'masks/train/a.png'} has no image: expected "
                           f"{tmp_path / 'images/train/a.jpg'}. Add the image or remove the mask")
    assert problems[1].startswith(f"  - train: label {tmp_path / 'masks/train/cam1/b.png'} has values [7] outside")
    assert problems[2].startswith(f"  - val: size mismatch: image {tmp_path / 'images/val/c.jpg'} is 4x3")


def test_data_check_refuses_bad_settings_in_one_line(tmp_path: Path, capsys) -> None:
    write_folder(tmp_path)
    config = str(ROOT / "configs" / "data" / "folder.yaml")
    base = ["data", "check", "--config", config, "--data.init_args.root", str(tmp_path)]
    assert main(base) == 5  # no classes.yaml under the root: a dataset problem
    err = capsys.readouterr().err.strip()
    assert err == (f"hyctas data check: error: classes file not found: {tmp_path / 'classes.yaml'} (a relative path "
                   "is read from the dataset root)")
    assert main([*base, "--data.init_args.classes", "[road, car, person]", "--data.init_args.mask_format", "rgb"]) == 2
    assert capsys.readouterr().err.strip().startswith("hyctas data check: error: mask_format rgb: masks are decoded")
