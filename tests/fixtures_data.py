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


# ---------------------------------------------------------------- Cityscapes panoptic (instanceIds)
V = 255000  # void in panoptic maps (class 255 * 1000)
# instanceIds: labelId * 1000 + k for instances (k from 0), a plain labelId for stuff and crowd "group" regions.
# 0/1 void (unlabeled, ego vehicle), 7 road, 8 sidewalk, 11 building, 23 sky, 24xxx person, 26xxx car, 26 a car
# group (crowd), 29000 a caravan (has instances but is not evaluated: void), 33000 a bicycle.
CITYSCAPES_INSTANCE_IDS = np.array([[0, 0, 23, 23, 23, 23, 23, 23],
                                    [11, 11, 11, 23, 23, 23, 11, 11],
                                    [8, 24000, 24000, 7, 7, 26000, 26000, 8],
                                    [8, 24000, 24001, 7, 26, 26000, 26000, 8],
                                    [29000, 29000, 7, 26001, 26001, 7, 7, 33000],
                                    [1, 7, 7, 26001, 26001, 26, 26, 33000]], np.uint16)
# The same as panoptic ids (class * 1000 + instance; trainIds road 0, sidewalk 1, building 2, sky 10, person 11,
# car 13, bicycle 18), written out by hand: instances count from 1, the car group is car crowd 13000.
CITYSCAPES_PANOPTIC = np.array([[V, V, 10000, 10000, 10000, 10000, 10000, 10000],
                                [2000, 2000, 2000, 10000, 10000, 10000, 2000, 2000],
                                [1000, 11001, 11001, 0, 0, 13001, 13001, 1000],
                                [1000, 11001, 11002, 0, 13000, 13001, 13001, 1000],
                                [V, V, 0, 13002, 13002, 0, 0, 18001],
                                [V, 0, 0, 13002, 13002, 13000, 13000, 18001]], np.int64)
CITYSCAPES_PANOPTIC_SEMANTIC = np.array([[X, X, 10, 10, 10, 10, 10, 10],
                                         [2, 2, 2, 10, 10, 10, 2, 2],
                                         [1, 11, 11, 0, 0, 13, 13, 1],
                                         [1, 11, 11, 0, 13, 13, 13, 1],
                                         [X, X, 0, 13, 13, 0, 0, 18],
                                         [X, 0, 0, 13, 13, 13, 13, 18]], np.uint8)


def write_uint16_png(path: Path, array: np.ndarray) -> Path:
    """A 16-bit greyscale PNG, as Cityscapes stores instanceIds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint16)).save(path)
    return path


def cityscapes_panoptic(root: Path, convert: bool = False) -> Dict[str, tuple]:
    """One train (aachen) and one val (frankfurt, mirrored) image with labelIds and instanceIds; with ``convert``
    also the cityscapesPanoptic layout made by cityscapesscripts' own ``createPanopticImgs`` (label ids).
    Returns name -> (expected semantic mask, expected panoptic map)."""
    expected = {}
    for seed, (split, city, name, flip) in enumerate([("train", "aachen", "aachen_000000_000019", False),
                                                     ("val", "frankfurt", "frankfurt_000000_000294", True)]):
        raw = CITYSCAPES_INSTANCE_IDS[:, ::-1] if flip else CITYSCAPES_INSTANCE_IDS
        h, w = raw.shape
        label_ids = np.where(raw >= 1000, raw // 1000, raw).astype(np.uint8)
        write_image(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", random_image(h, w, seed))
        write_image(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", label_ids)
        write_uint16_png(root / "gtFine" / split / city / f"{name}_gtFine_instanceIds.png", raw)
        semantic, panoptic = CITYSCAPES_PANOPTIC_SEMANTIC, CITYSCAPES_PANOPTIC
        expected[name] = (semantic[:, ::-1], panoptic[:, ::-1]) if flip else (semantic, panoptic)
    if convert:
        from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

        convert2panoptic(str(root / "gtFine"), str(root / "gtFine"), useTrainId=False, setNames=["train", "val"])
    return expected


# COCO panoptic ids of COCO_IDS (classes: train 0, person 1, tree-merged 2): the trains' crowd is train crowd 0.
COCO_PANOPTIC = np.array([[V, 1001, 1001, 2000, 2000, 2000],
                          [V, 1001, 1001, 2000, 0, 0],
                          [1001, 1001, V, 2000, 0, 0],
                          [2000, 2000, 2000, 2000, V, V]], np.int64)


# ---------------------------------------------------------------- COCO-format panoptic predictions vs ground truth
PQ_CATEGORIES = [{"id": 3, "name": "car", "isthing": 1}, {"id": 11, "name": "person", "isthing": 1},
                 {"id": 5, "name": "bike", "isthing": 1}, {"id": 40, "name": "road", "isthing": 0},
                 {"id": 41, "name": "sky", "isthing": 0}, {"id": 47, "name": "grass", "isthing": 0}]


def _paint(canvas: np.ndarray, rng: np.random.Generator, value: int, min_size: int, max_size: int) -> None:
    h, w = canvas.shape
    bh, bw = rng.integers(min_size, max_size + 1, 2)
    y, x = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
    canvas[y:y + bh, x:x + bw] = value


def _scene(rng: np.random.Generator, h: int, w: int) -> tuple:
    """A ground-truth scene: (segment-id map, {id: (category, iscrowd)}) with stuff bands, thing boxes (some tiny,
    some touching), a crowd region and void."""
    ids = np.zeros((h, w), np.int64)
    segments = {}
    next_id = iter(range(7, 10 ** 6, 13))
    for category, top, bottom in ((41, 0, h // 3), (47, h // 3, h // 2), (40, h // 2, h)):
        sid = next(next_id)
        ids[top:bottom] = sid
        segments[sid] = (category, 0)
    for _ in range(rng.integers(4, 9)):
        sid = next(next_id)
        _paint(ids, rng, sid, 2 if rng.random() < 0.25 else 5, 16)
        segments[sid] = (int(rng.choice([3, 11, 5])), 0)
    crowd = next(next_id)
    _paint(ids, rng, crowd, 4, 12)
    segments[crowd] = (int(rng.choice([3, 11])), 1)
    _paint(ids, rng, 0, 3, 10)  # void
    present = set(np.unique(ids).tolist())
    return ids, {k: v for k, v in segments.items() if k in present}


def _prediction(rng: np.random.Generator, ids: np.ndarray, segments: dict) -> tuple:
    """A prediction of a scene: segments shifted, grown, relabelled, split or dropped, spurious boxes (some on
    void or on the crowd), void patches, ids renumbered."""
    pred = ids.copy()
    info = {k: c for k, (c, _) in segments.items()}
    next_id = iter(range(100003, 10 ** 6, 17))
    for sid, category in list(info.items()):
        mask = pred == sid
        action = rng.choice(["keep", "shift", "grow", "relabel", "split", "drop"], p=[.3, .2, .15, .1, .15, .1])
        if action == "shift":
            dy, dx = rng.integers(-3, 4, 2)
            moved = np.roll(mask, (dy, dx), (0, 1))
            pred[mask] = 0
            pred[moved] = sid
        elif action == "grow":
            pred[np.roll(mask, 2, 0) | np.roll(mask, 2, 1)] = sid
        elif action == "relabel":
            info[sid] = int(rng.choice([c["id"] for c in PQ_CATEGORIES]))
        elif action == "split":
            ys, xs = np.nonzero(mask)
            half = mask & (np.arange(ids.shape[1])[None, :] >= np.median(xs)) if len(xs) else mask
            new = next(next_id)
            pred[half] = new
            info[new] = category
        elif action == "drop":
            pred[mask] = 0
    for _ in range(rng.integers(1, 4)):
        new = next(next_id)
        _paint(pred, rng, new, 2, 9)
        info[new] = int(rng.choice([c["id"] for c in PQ_CATEGORIES]))
    _paint(pred, rng, 0, 2, 6)
    present = set(np.unique(pred).tolist()) - {0}
    return pred, {k: v for k, v in info.items() if k in present}


def coco_panoptic_predictions(root: Path, images: int = 6, size: tuple = (48, 64), seed: int = 0) -> Dict[str, Path]:
    """Ground truth and predictions in COCO panoptic format under ``root`` (``gt.json``, ``gt/``, ``pred.json``,
    ``pred/``), generated from a seed: several thing and stuff categories (ids not contiguous), crowd regions,
    void, tiny, unmatched, split, shifted and relabelled segments. Returns the four paths."""
    rng = np.random.default_rng(seed)
    gt_doc = {"images": [], "annotations": [], "categories": PQ_CATEGORIES}
    pred_doc = {"annotations": [], "categories": PQ_CATEGORIES}
    for k in range(images):
        ids, segments = _scene(rng, *size)
        pred, info = _prediction(rng, ids, segments)
        name = f"image_{k:03d}"
        write_image(root / "gt" / f"{name}.png", ids_to_rgb(ids))
        write_image(root / "pred" / f"{name}.png", ids_to_rgb(pred))
        gt_doc["images"].append({"id": name, "file_name": f"{name}.jpg", "height": size[0], "width": size[1]})
        gt_doc["annotations"].append({"image_id": name, "file_name": f"{name}.png", "segments_info": [
            {"id": sid, "category_id": c, "iscrowd": crowd, "area": int((ids == sid).sum())}
            for sid, (c, crowd) in segments.items()]})
        pred_doc["annotations"].append({"image_id": name, "file_name": f"{name}.png", "segments_info": [
            {"id": sid, "category_id": c} for sid, c in info.items()]})
    (root / "gt.json").write_text(json.dumps(gt_doc))
    (root / "pred.json").write_text(json.dumps(pred_doc))
    return {"gt_json": root / "gt.json", "gt_dir": root / "gt", "pred_json": root / "pred.json",
            "pred_dir": root / "pred"}
