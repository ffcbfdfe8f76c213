"""COCO panoptic 2017: the JSON's categories in order become classes 0..132 (80 things, 53 stuff); crowd segments
and unlabeled pixels are ignored in the semantic masks. With panoptic targets on, samples also carry the panoptic
id map (crowd segments kept as crowd regions) and the annotation's image id."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from .base import FileDataModule, Sample, SegmentationDataset
from .files import (
    DatasetError,
    MissingSplitError,
    check_same_size,
    read_image,
    read_label,
    require_dir,
    require_items,
    require_root,
    with_layout,
)
from .labels import IGNORE_INDEX, Colour, generated_palette
from .panoptic import segments_to_panoptic
from .registry import register_datamodule
from .transforms import TransformConfig

COCO_LAYOUT = """\
ROOT/
├── annotations/
│   ├── panoptic_{train,val}2017.json
│   └── panoptic_{train,val}2017/*.png   (or ROOT/panoptic_{train,val}2017/*.png)
└── {train,val}2017/*.jpg
"""


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of a panoptic PNG: id = R + 256 G + 256^2 B (the COCO panoptic encoding; 0 = unlabeled)."""
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


@dataclass(frozen=True)
class PanopticRecord:
    """One annotated image: its files and the JSON's ``segments_info`` for its PNG.

    Args:
        image: the JPEG image.
        png: the panoptic PNG of segment ids.
        segments_info: the JSON's segments of the PNG (``id``, ``category_id``, ``iscrowd``, ...).
        name: the sample's name (the PNG's stem, which COCO shares with the image).
        image_id: the JSON's image id, kept for COCO-format predictions.
    """

    image: Path
    png: Path
    segments_info: Tuple[Dict[str, Any], ...]
    name: str
    image_id: Any = None


def _field(entry: Dict[str, Any], key: str, where: str, json_path: Path) -> Any:
    """``entry[key]``, or an error naming the JSON and the entry that lacks it."""
    if not isinstance(entry, dict) or key not in entry:
        raise DatasetError(f"{json_path}: {where} has no '{key}' field; expected the official COCO panoptic JSON")
    return entry[key]


class CocoPanopticDataset(SegmentationDataset):
    """One split (``train`` or ``val``) of COCO panoptic 2017: semantic masks, and panoptic ids when asked.

    Args:
        root: the COCO folder (``annotations/panoptic_{split}2017.json`` and the images and PNGs beside it).
        split: ``train`` or ``val``.
        **options: passed to ``SegmentationDataset`` (``transform``, ``max_samples``, ``panoptic``, ...).
    """

    layout = COCO_LAYOUT

    def __init__(self, root: str | Path, split: str, **options: Any) -> None:
        self.root = require_root(root, self.layout)
        self.json_path = self.root / "annotations" / f"panoptic_{split}2017.json"
        if not self.json_path.is_file():
            raise MissingSplitError(with_layout(f"COCO panoptic {split} annotations not found: {self.json_path}",
                                                self.root, self.layout))
        data = self._read_json()
        categories = _field(data, "categories", "the top level", self.json_path)
        self.classes = tuple(str(_field(c, "name", f"categories[{k}]", self.json_path))
                             for k, c in enumerate(categories))
        self.palette = generated_palette(len(self.classes))
        self.category_index = {_field(c, "id", f"categories[{k}]", self.json_path): k
                               for k, c in enumerate(categories)}
        self.category_ids = tuple(self.category_index)
        self.is_thing = tuple(bool(c.get("isthing", 0)) for c in categories)
        self.thing_classes = tuple(name for name, thing in zip(self.classes, self.is_thing) if thing)
        self.records = require_items(self._records(data, split), f"COCO panoptic {split} split ({self.json_path})",
                                     self.root, self.layout)
        super().__init__(len(self.records), split, **options)

    def _read_json(self) -> Dict[str, Any]:
        try:
            return json.loads(self.json_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(f"cannot parse {self.json_path}: {error}; re-extract the annotations") from None

    def _png_dir(self, split: str) -> Path:
        """The official zip nests the PNG folder under annotations/; some copies unpack it at the root."""
        nested = self.root / "annotations" / f"panoptic_{split}2017"
        return nested if nested.is_dir() else require_dir(
            self.root / f"panoptic_{split}2017", f"COCO panoptic {split} PNG folder (also looked for {nested})",
            self.root, self.layout)

    def _records(self, data: Dict[str, Any], split: str) -> List[PanopticRecord]:
        images_dir = require_dir(self.root / f"{split}2017", f"COCO {split} images", self.root, self.layout)
        png_dir = self._png_dir(split)
        path = self.json_path
        files = {_field(im, "id", f"images[{k}]", path): _field(im, "file_name", f"images[{k}]", path)
                 for k, im in enumerate(_field(data, "images", "the top level", path))}
        records = []
        for k, ann in enumerate(_field(data, "annotations", "the top level", path)):
            where = f"annotations[{k}]"
            image_id, png = _field(ann, "image_id", where, path), _field(ann, "file_name", where, path)
            if image_id not in files:
                raise DatasetError(f"{path}: {where} ({png}) refers to image_id {image_id}, which is not in 'images'")
            segments = tuple(_field(ann, "segments_info", where, path))
            for j, segment in enumerate(segments):
                for key in ("id", "category_id"):
                    _field(segment, key, f"{where}.segments_info[{j}]", path)
            records.append(PanopticRecord(images_dir / files[image_id], png_dir / png, segments, Path(png).stem,
                                          image_id))
        return sorted(records, key=lambda record: record.name)

    def segments(self, index: int) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
        """Sample ``index``'s per-pixel segment ids (int32 H x W, 0 = unlabeled) and its ``segments_info``,
        checked against each other: the raw material of panoptic targets."""
        record = self.records[self.indices[index]]
        return self._segment_ids(record), [dict(segment) for segment in record.segments_info]

    def load_item(self, item: int) -> Sample:
        record = self.records[item]
        image = read_image(record.image)
        ids = self._segment_ids(record)
        check_same_size(record.image, image, record.png, ids)
        panoptic = None if self.panoptic is None else segments_to_panoptic(
            ids, record.segments_info, self.category_index, self.is_thing, record.png)
        return Sample(image, self._semantic(ids, record), record.name, panoptic, record.image_id)

    def _segment_ids(self, record: PanopticRecord) -> np.ndarray:
        ids = rgb_to_id(read_label(record.png, record.image, modes=("RGB",),
                                   expected="an RGB PNG of panoptic segment ids"))
        in_png = set(np.unique(ids).tolist()) - {0}
        listed = {segment["id"] for segment in record.segments_info}
        if in_png != listed:
            raise DatasetError(
                f"panoptic PNG {record.png} does not match its segments_info in {self.json_path}: segment ids in the "
                f"PNG but not in segments_info: {sorted(in_png - listed)}; in segments_info but not in the PNG: "
                f"{sorted(listed - in_png)}. Re-extract the PNGs and the JSON from the same release")
        return ids

    def _class_of(self, segment: Dict[str, Any], record: PanopticRecord) -> int:
        if segment.get("iscrowd", 0):
            return IGNORE_INDEX
        try:
            return self.category_index[segment["category_id"]]
        except KeyError:
            raise DatasetError(f"segment {segment['id']} of {record.png} has category_id {segment['category_id']}, "
                               f"which is not among the categories of {self.json_path}") from None

    def _semantic(self, ids: np.ndarray, record: PanopticRecord) -> np.ndarray:
        """Class per pixel via a sorted segment-id lookup (every id is known: ``_segment_ids`` checked it)."""
        keys = np.array([0] + [segment["id"] for segment in record.segments_info], np.int64)
        values = np.array([IGNORE_INDEX] + [self._class_of(s, record) for s in record.segments_info], np.uint8)
        order = np.argsort(keys)
        return values[order][np.searchsorted(keys[order], ids)]


@register_datamodule("coco_panoptic")
class CocoPanopticDataModule(FileDataModule):
    """COCO panoptic 2017, 133 classes: train 118287, val 5000 images; test reads val.

    Args:
        root: folder holding ``annotations/`` and ``{train,val}2017/``; the rest as ``SegmentationDataModule``.
    """

    dataset_type = CocoPanopticDataset
    default_transforms = TransformConfig(crop_size=(640, 640), scale_range=(0.5, 1.5), color_jitter=0.2)

    @property
    def classes(self) -> Tuple[str, ...]:
        """The categories of the val JSON (identical in train), which every copy has."""
        return self.dataset("val").classes

    @property
    def palette(self) -> List[Colour]:
        return self.dataset("val").palette

    @property
    def thing_classes(self) -> Tuple[str, ...]:
        return self.dataset("val").thing_classes

    @property
    def panoptic_categories(self) -> List[Dict[str, Any]]:
        """The JSON's categories, ids included, so predictions score against the official annotations."""
        return [{**category, "id": cid} for category, cid in zip(super().panoptic_categories,
                                                                 self.dataset("val").category_ids)]
