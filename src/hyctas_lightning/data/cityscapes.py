"""Cityscapes (gtFine): 19 training classes from the official labelIds, or from pre-made labelTrainIds files; with
panoptic targets on, instances from cityscapesscripts' panoptic conversion (``createPanopticImgs``:
``gtFine/cityscapes_panoptic_SPLIT.json`` and PNGs) where present, else from the ``*_gtFine_instanceIds.png`` files
of the official download."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .base import FileDataModule, FilePair, PairedFilesDataset, Sample
from .coco import rgb_to_id
from .files import DatasetError, check_same_size, read_label, require_dir, require_items
from .labels import IGNORE_INDEX, LABEL_DIVISOR, VOID, LabelMap
from .panoptic import segments_to_panoptic
from .registry import register_datamodule
from .transforms import TransformConfig

# The label table of cityscapesScripts (cityscapesscripts/helpers/labels.py): name, id, trainId, colour.
# trainId 255 (and -1 for the licence plate, which label images never contain) means ignored in training.
CITYSCAPES_LABELS: Tuple[Tuple[str, int, int, Tuple[int, int, int]], ...] = (
    ("unlabeled", 0, 255, (0, 0, 0)),
    ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)),
    ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
    ("license plate", -1, -1, (0, 0, 142)),
)
_TRAINED = sorted((train_id, name, colour) for name, _, train_id, colour in CITYSCAPES_LABELS if 0 <= train_id < 255)
CITYSCAPES_CLASSES = tuple(name for _, name, _ in _TRAINED)
CITYSCAPES_PALETTE = [colour for _, _, colour in _TRAINED]
# The evaluated classes with instances (cityscapesscripts: hasInstances and not ignoreInEval).
CITYSCAPES_THINGS = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# labelId of each training class: the category ids of official (non-trainId) panoptic files.
CITYSCAPES_LABEL_IDS = tuple(next(i for n, i, _, _ in CITYSCAPES_LABELS if n == name) for name in CITYSCAPES_CLASSES)

_FIX = "Use the gtFine label images of the official download (or regenerate them with cityscapesScripts)"
LABEL_IDS = LabelMap({label_id: train_id if 0 <= train_id < 255 else IGNORE_INDEX
                      for _, label_id, train_id, _ in CITYSCAPES_LABELS if label_id >= 0},
                     known="Cityscapes labelIds 0..33", fix=_FIX)
TRAIN_IDS = LabelMap({**{k: k for k in range(len(CITYSCAPES_CLASSES))}, IGNORE_INDEX: IGNORE_INDEX},
                     known="Cityscapes labelTrainIds 0..18 and 255", fix=_FIX)

CITYSCAPES_LAYOUT = """\
ROOT/
├── leftImg8bit/
│   └── {train,val,test}/CITY/CITY_SEQ_FRAME_leftImg8bit.png
└── gtFine/
    ├── {train,val,test}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png
    │   (CITY_SEQ_FRAME_gtFine_labelTrainIds.png is used instead where present;
    │    panoptic: CITY_SEQ_FRAME_gtFine_instanceIds.png next to them)
    └── cityscapes_panoptic_{train,val}[_trainId].json + folder of PNGs   (panoptic, optional: createPanopticImgs)
"""
_IMAGE_SUFFIX = "_leftImg8bit.png"
_CLASS_OF_LABEL_ID = np.full(256, IGNORE_INDEX, np.int64)  # labelId -> class (trainId), ignore for the rest
for _name, _label_id, _train_id, _ in CITYSCAPES_LABELS:
    if _label_id >= 0 and 0 <= _train_id < 255:
        _CLASS_OF_LABEL_ID[_label_id] = _train_id
_IS_THING = np.array([name in CITYSCAPES_THINGS for name in CITYSCAPES_CLASSES] + [False])


def instance_ids_to_panoptic(raw: np.ndarray, path: Path) -> np.ndarray:
    """A ``*_gtFine_instanceIds.png`` as a panoptic id map: values of 1000 and more are ``labelId * 1000 + k``
    (instance k + 1 here, as 0 marks crowds), smaller ones a plain labelId (stuff, or a crowd "group" region of a
    thing class); labels that are not evaluated are void, as in cityscapesscripts' ``createPanopticImgs``."""
    raw = raw.astype(np.int64)
    label_id = np.where(raw >= 1000, raw // 1000, raw)
    if label_id.max(initial=0) > 33 or label_id.min(initial=0) < 0:
        raise DatasetError(f"{path} has label ids outside 0..33; expected an official gtFine instanceIds PNG")
    if (raw % 1000 == 999).any():
        raise DatasetError(f"{path} has instance 999 of some class; at most 998 instances per class are supported")
    classes = _CLASS_OF_LABEL_ID[label_id]
    thing = _IS_THING[np.minimum(classes, len(CITYSCAPES_CLASSES))]
    instance = np.where(thing & (raw >= 1000), raw % 1000 + 1, 0)
    return np.where(classes == IGNORE_INDEX, VOID, classes * LABEL_DIVISOR + instance)


class CityscapesDataset(PairedFilesDataset):
    """One split of Cityscapes fine annotations, read with the official label table; with panoptic targets on,
    instances from the cityscapesPanoptic files of the split if there are any, else from the instanceIds files.
    Crowd ("group") regions keep their class in the semantic mask, as in the semantic benchmark.

    Args:
        root: the Cityscapes folder (``leftImg8bit/`` and ``gtFine/`` in it).
        split: ``train``, ``val`` or ``test``.
        **options: passed to ``SegmentationDataset`` (``transform``, ``max_samples``, ``panoptic``, ...).
    """

    classes = CITYSCAPES_CLASSES
    thing_classes = CITYSCAPES_THINGS
    palette = CITYSCAPES_PALETTE
    layout = CITYSCAPES_LAYOUT

    def __init__(self, root: str | Path, split: str, **options: Any) -> None:
        super().__init__(root, split, **options)
        self.panoptic_annotations: Optional[Dict[str, Dict[str, Any]]] = None
        if self.panoptic is not None:
            self._find_panoptic_json(split)

    def _find_panoptic_json(self, split: str) -> None:
        """Use createPanopticImgs' output for ``split`` if there is one (labelId categories, else trainId ones)."""
        for suffix, category_index in (("", dict(zip(CITYSCAPES_LABEL_IDS, range(len(CITYSCAPES_CLASSES))))),
                                       ("_trainId", {k: k for k in range(len(CITYSCAPES_CLASSES))})):
            path = self.root / "gtFine" / f"cityscapes_panoptic_{split}{suffix}.json"
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                    annotations = {a["image_id"]: a for a in data["annotations"]}
                except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
                    raise DatasetError(f"cannot read {path} ({error!r}); regenerate it with cityscapesscripts' "
                                       "createPanopticImgs") from None
                self.panoptic_json, self.panoptic_png_dir = path, path.with_suffix("")
                self.panoptic_annotations, self.category_index = annotations, category_index
                return

    def load_item(self, item: int) -> Sample:
        sample = super().load_item(item)
        if self.panoptic is None:
            return sample
        pair = self.pairs[item]
        if self.panoptic_annotations is None:
            path = pair.label.with_name(f"{pair.name}_gtFine_instanceIds.png")
            raw = read_label(path, pair.image, modes=("I", "I;16"), expected="a 16-bit PNG of instance ids")
            panoptic = instance_ids_to_panoptic(raw, path)
        else:
            annotation = self.panoptic_annotations.get(pair.name)
            if annotation is None:
                raise DatasetError(f"{self.panoptic_json} has no annotation for image {pair.name}; regenerate it "
                                   "with createPanopticImgs")
            path = self.panoptic_png_dir / annotation["file_name"]
            ids = rgb_to_id(read_label(path, pair.image, modes=("RGB",), expected="an RGB PNG of panoptic segment ids"))
            panoptic = segments_to_panoptic(ids, annotation["segments_info"], self.category_index, _IS_THING[:-1],
                                            path)
        check_same_size(pair.image, sample.image, path, panoptic)
        return sample._replace(panoptic=panoptic)

    def find_pairs(self, split: str) -> List[FilePair]:
        images = require_dir(self.root / "leftImg8bit" / split, f"Cityscapes {split} images", self.root, self.layout)
        labels = require_dir(self.root / "gtFine" / split, f"Cityscapes {split} labels", self.root, self.layout)
        pairs = [self._pair(path, labels) for path in sorted(images.glob(f"*/*{_IMAGE_SUFFIX}"))]
        return require_items(pairs, f"Cityscapes {split} split (CITY/*{_IMAGE_SUFFIX} in {images})", self.root,
                             self.layout)

    @staticmethod
    def _pair(image: Path, labels: Path) -> FilePair:
        """Prefer pre-made trainIds (already mapped), else the labelIds every download has."""
        name = image.name[: -len(_IMAGE_SUFFIX)]
        folder = labels / image.parent.name
        train_ids = folder / f"{name}_gtFine_labelTrainIds.png"
        if train_ids.is_file():
            return FilePair(image, train_ids, TRAIN_IDS, name)
        return FilePair(image, folder / f"{name}_gtFine_labelIds.png", LABEL_IDS, name)


@register_datamodule("cityscapes")
class CityscapesDataModule(FileDataModule):
    """Cityscapes, 19 classes (8 with instances: person, rider, car, truck, bus, train, motorcycle, bicycle): train
    2975, val 500 (and test 1525 without public labels) images at 1024x2048.

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/``; the rest as ``SegmentationDataModule``.
    """

    dataset_type = CityscapesDataset
    optional_splits = ("test",)
    default_transforms = TransformConfig(crop_size=(512, 1024), scale_range=(0.5, 2.0), color_jitter=0.2)

    @property
    def panoptic_categories(self) -> List[Dict[str, Any]]:
        """Categories by labelId, as the official panoptic evaluation expects of predictions."""
        return [{**c, "id": CITYSCAPES_LABEL_IDS[k]} for k, c in enumerate(super().panoptic_categories)]
