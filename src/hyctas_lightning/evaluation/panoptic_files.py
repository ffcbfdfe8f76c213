"""COCO-format panoptic files: writing panoptic maps as a PNG of segment ids plus ``segments_info``, and scoring a
folder of such predictions against COCO-format ground truth (COCO panoptic, or Cityscapes converted by
cityscapesscripts' ``createPanopticImgs``) with ``PanopticQuality``.

Ground truth is checked like predictions: a segment id in a PNG but not in its ``segments_info``, or the other way
round, is an error naming the file. Segment areas are counted from the PNGs (the JSON's ``area`` is not read), and
the crowd segments of one category in an image form one crowd region (the format has at most one).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from hyctas_lightning.data.coco import rgb_to_id
from hyctas_lightning.data.files import DatasetError
from hyctas_lightning.data.labels import LABEL_DIVISOR
from hyctas_lightning.data.panoptic import segments_to_panoptic
from hyctas_lightning.fileio import write_json

from .panoptic_quality import PanopticQuality, PanopticScores


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Segment ids as the COCO panoptic PNG colours (R + 256 G + 256^2 B)."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], -1).astype(np.uint8)


def to_coco_panoptic(panoptic: np.ndarray, category_ids: Sequence[Any],
                     label_divisor: int = LABEL_DIVISOR) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """A panoptic map ``(H, W)`` as a COCO panoptic PNG (RGB of segment ids 1, 2, ...; void 0) and its
    ``segments_info`` (``id``, ``category_id`` from ``category_ids[class]``, ``area``, ``bbox``, ``iscrowd`` 0)."""
    values, inverse, areas = np.unique(panoptic, return_inverse=True, return_counts=True)
    classes = values // label_divisor
    real = (values >= 0) & (classes < len(category_ids))
    new_ids = np.where(real, np.cumsum(real), 0)
    ids = new_ids[inverse.reshape(panoptic.shape)]
    boxes = ndimage.find_objects(ids)  # (rows, cols) slices of segments 1, 2, ...
    segments = []
    for k in np.flatnonzero(real):
        rows, cols = boxes[new_ids[k] - 1]
        segments.append({"id": int(new_ids[k]), "category_id": category_ids[int(classes[k])], "area": int(areas[k]),
                         "bbox": [cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start],
                         "iscrowd": 0})
    return id_to_rgb(ids), segments


def _load_json(path: Path, what: str) -> Dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{what} JSON not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot parse {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path}: no 'annotations' list; expected a COCO panoptic JSON")
    return data


def _read_segments(folder: Path, annotation: Dict[str, Any], json_path: Path) -> np.ndarray:
    """Segment ids of one annotation's PNG, checked against its ``segments_info`` both ways."""
    png = folder / annotation["file_name"]
    if not png.is_file():
        raise FileNotFoundError(f"{json_path}: the PNG of image {annotation['image_id']!r} is missing: {png}")
    with Image.open(png) as image:
        ids = rgb_to_id(np.asarray(image.convert("RGB")))
    in_png = set(np.unique(ids).tolist()) - {0}
    listed = {segment["id"] for segment in annotation["segments_info"]}
    if in_png != listed:
        raise DatasetError(f"{png} does not match its segments_info in {json_path}: in the PNG only "
                           f"{sorted(in_png - listed)[:10]}, in segments_info only {sorted(listed - in_png)[:10]}")
    return ids


def evaluate_panoptic_files(gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path, pred_dir: str | Path,
                            device: str = "cpu") -> Tuple[PanopticScores, List[Dict[str, Any]]]:
    """PQ of COCO-format predictions against COCO-format ground truth; every ground-truth image needs a prediction
    (matched by ``image_id``). Returns the scores (classes in the order of the ground truth's ``categories``) and
    those categories."""
    gt_json, pred_json, gt_dir, pred_dir = Path(gt_json), Path(pred_json), Path(gt_dir), Path(pred_dir)
    gt, pred = _load_json(gt_json, "ground-truth"), _load_json(pred_json, "prediction")
    categories = gt.get("categories")
    if not categories:
        raise DatasetError(f"{gt_json}: no 'categories'; expected a COCO panoptic JSON")
    index = {c["id"]: k for k, c in enumerate(categories)}
    is_thing = [bool(c.get("isthing", 0)) for c in categories]
    metric = PanopticQuality(len(categories), [k for k, t in enumerate(is_thing) if t]).to(device)
    predictions = {a["image_id"]: a for a in pred["annotations"]}
    for gt_ann in gt["annotations"]:
        image_id = gt_ann["image_id"]
        if image_id not in predictions:
            raise DatasetError(f"{pred_json} has no prediction for image {image_id!r} of {gt_json}")
        pred_ann = predictions[image_id]
        target = segments_to_panoptic(_read_segments(gt_dir, gt_ann, gt_json), gt_ann["segments_info"], index,
                                      is_thing, f"{gt_json} (image {image_id!r})")
        preds = segments_to_panoptic(_read_segments(pred_dir, pred_ann, pred_json), pred_ann["segments_info"], index,
                                     is_thing, f"{pred_json} (image {image_id!r})", keep_crowd=False)
        if preds.shape != target.shape:
            raise DatasetError(f"image {image_id!r}: prediction {pred_ann['file_name']} is {preds.shape[::-1]} but "
                               f"the ground truth is {target.shape[::-1]} (width x height)")
        metric.update(torch.from_numpy(preds)[None].to(device), torch.from_numpy(target)[None].to(device))
    return metric.compute(), list(categories)


def write_scores(scores: PanopticScores, categories: Sequence[Dict[str, Any]], path: str | Path) -> Dict[str, Any]:
    """Write ``scores.to_dict`` keyed by category id to ``path`` (JSON) and return it."""
    result = scores.to_dict([c["id"] for c in categories])
    write_json(path, result)
    return result
