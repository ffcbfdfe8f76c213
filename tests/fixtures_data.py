"""Tiny hand-made copies of each benchmark in its official layout, with the masks they must decode to.

Every label is written by hand in raw ids and every expected mask is written by hand in training ids, so the
tests check the loaders against the published label tables, not against the loaders' own tables.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
from PIL import Image

CAMVID_ROOT = Path(os.environ.get("HYCTAS_CAMVID_ROOT",
                                  Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "camvid"))
X = 255  # ignore


def write_image(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8, HxW or HxWx3) with the format of the suffix, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix == ".jpg" else {}
    Image.fromarray(array).save(path, **options)
    return path


def random_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------- Cityscapes
# labelIds -> trainIds by the cityscapesScripts table: 0-6 void, 7 road=0, 8 sidewalk=1, 9 parking void,
# 11 building=2, 17 pole=5, 19 light=6, 20 sign=7, 21 vegetation=8, 22 terrain=9, 23 sky=10, 24 person=11,
# 25 rider=12, 26 car=13, 31 train=16, 32 motorcycle=17, 33 bicycle=18.
CITYSCAPES_IDS = np.array([[0, 1, 2, 3, 7, 7],
                           [7, 7, 26, 26, 8, 11],
                           [24, 25, 33, 32, 31, 23],
                           [21, 22, 17, 19, 20, 9]], np.uint8)
CITYSCAPES_EXPECTED = np.array([[X, X, X, X, 0, 0],
                                [0, 0, 13, 13, 1, 2],
                                [11, 12, 18, 17, 16, 10],
                                [8, 9, 5, 6, 7, X]], np.uint8)
# A pre-made trainIds file wins over the labelIds next to it (written all void here to prove it is not read).
CITYSCAPES_TRAIN_IDS = np.array([[0, 1, 2, 3, 4, 5],
                                 [6, 7, 8, 9, 10, 11],
                                 [12, 13, 14, 15, 16, 17],
                                 [18, X, X, 0, 0, 0]], np.uint8)


def cityscapes(root: Path) -> Dict[str, np.ndarray]:
    """train: aachen (labelIds only) and bochum (with labelTrainIds); val: frankfurt. Returns name -> mask."""
    h, w = CITYSCAPES_IDS.shape
    samples = {("train", "aachen", "aachen_000000_000019"): (CITYSCAPES_IDS, None),
               ("train", "bochum", "bochum_000000_000313"): (np.zeros((h, w), np.uint8), CITYSCAPES_TRAIN_IDS),
               ("val", "frankfurt", "frankfurt_000000_000294"): (CITYSCAPES_IDS[::-1].copy(), None)}
    for seed, ((split, city, name), (label_ids, train_ids)) in enumerate(samples.items()):
        write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", random_image(h, w, seed))
        write_image(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", label_ids)
        if train_ids is not None:
            write_image(root / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png", train_ids)
    return {"aachen_000000_000019": CITYSCAPES_EXPECTED, "bochum_000000_000313": CITYSCAPES_TRAIN_IDS,
            "frankfurt_000000_000294": CITYSCAPES_EXPECTED[::-1]}


# ---------------------------------------------------------------- ADE20K
ADE_RAW = np.array([[0, 1, 2, 3],
                    [150, 0, 13, 1],
                    [21, 21, 149, 0]], np.uint8)
ADE_EXPECTED = np.array([[X, 0, 1, 2],
                         [149, X, 12, 0],
                         [20, 20, 148, X]], np.uint8)


def ade20k(root: Path) -> Dict[str, np.ndarray]:
    """One training and one validation image. Returns name -> mask."""
    base = root / "ADEChallengeData2016"
    for seed, (folder, name, raw) in enumerate([("training", "ADE_train_00000001", ADE_RAW),
                                                ("validation", "ADE_val_00000001", ADE_RAW.T.copy())]):
        write_image(base / "images" / folder / f"{name}.jpg", random_image(*raw.shape, seed))
        write_image(base / "annotations" / folder / f"{name}.png", raw)
    return {"ADE_train_00000001": ADE_EXPECTED, "ADE_val_00000001": ADE_EXPECTED.T}


# ---------------------------------------------------------------- CamVid (SegNet lists)
CAMVID_LABEL = np.array([[0, 1, 2, 3, 4],
                         [5, 6, 7, 8, 9],
                         [10, X, 3, 3, 0]], np.uint8)


def camvid(root: Path) -> Dict[str, np.ndarray]:
    """Two training and one validation pair, listed in train.txt / val.txt. Returns name -> mask."""
    h, w = CAMVID_LABEL.shape
    expected = {}
    for seed, (split, name) in enumerate([("train", "0001TP_006690"), ("train", "0001TP_006720"),
                                          ("val", "0016E5_07959")]):
        label = np.roll(CAMVID_LABEL, seed, axis=1)
        write_image(root / split / f"{name}.png", random_image(h, w, seed))
        write_image(root / f"{split}annot" / f"{name}.png", label)
        with open(root / f"{split}.txt", "a") as listing:
            listing.write(f"{split}/{name}.png {split}annot/{name}.png\n")
        expected[name] = label
    return expected


# ---------------------------------------------------------------- COCO panoptic
# Categories deliberately not sorted by id: classes follow the JSON's order (7 -> 0, 1 -> 1, 184 -> 2).
COCO_CATEGORIES = [{"id": 7, "name": "train", "isthing": 1}, {"id": 1, "name": "person", "isthing": 1},
                   {"id": 184, "name": "tree-merged", "isthing": 0}]
# Segment ids: 1000 person, 70000 tree-merged (needs the blue channel), 5000 a crowd of trains, 0 unlabeled.
COCO_IDS = np.array([[0, 1000, 1000, 70000, 70000, 70000],
                     [0, 1000, 1000, 70000, 5000, 5000],
                     [1000, 1000, 0, 70000, 5000, 5000],
                     [70000, 70000, 70000, 70000, 0, 0]], np.int64)
COCO_EXPECTED = np.array([[X, 1, 1, 2, 2, 2],
                          [X, 1, 1, 2, X, X],
                          [1, 1, X, 2, X, X],
                          [2, 2, 2, 2, X, X]], np.uint8)
COCO_SEGMENTS = [{"id": 1000, "category_id": 1, "iscrowd": 0}, {"id": 70000, "category_id": 184, "iscrowd": 0},
                 {"id": 5000, "category_id": 7, "iscrowd": 1}]


def ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Encode segment ids as the panoptic PNG colours (R + 256 G + 256^2 B), written here independently."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def coco_panoptic(root: Path, png_at_root: bool = False) -> Dict[str, np.ndarray]:
    """One image per split; PNG folders under annotations/ (official) or at the root. Returns name -> mask."""
    h, w = COCO_IDS.shape
    expected = {}
    for seed, split in enumerate(["train", "val"]):
        ids = COCO_IDS if split == "val" else COCO_IDS[:, ::-1]
        stem = f"{seed + 139:012d}"
        write_image(root / f"{split}2017" / f"{stem}.jpg", random_image(h, w, seed))
        png_dir = root / f"panoptic_{split}2017" if png_at_root else root / "annotations" / f"panoptic_{split}2017"
        write_image(png_dir / f"{stem}.png", ids_to_rgb(ids))
        document = {"images": [{"id": seed + 139, "file_name": f"{stem}.jpg", "height": h, "width": w}],
                    "annotations": [{"image_id": seed + 139, "file_name": f"{stem}.png",
                                     "segments_info": COCO_SEGMENTS}],
                    "categories": COCO_CATEGORIES}
        json_path = root / "annotations" / f"panoptic_{split}2017.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document))
        expected[stem] = COCO_EXPECTED if split == "val" else COCO_EXPECTED[:, ::-1]
    return expected


@pytest.fixture
def camvid_root() -> Path:
    """The real CamVid copy next to the repository, or a skip that says where it was looked for."""
    if not (CAMVID_ROOT / "train.txt").is_file():
        pytest.skip(f"real CamVid copy not found at {CAMVID_ROOT.resolve()} (set HYCTAS_CAMVID_ROOT)")
    return CAMVID_ROOT
