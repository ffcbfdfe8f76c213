"""Cityscapes (gtFine): 19 training classes from the official labelIds, or from pre-made labelTrainIds files."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from .base import FileDataModule, FilePair, PairedFilesDataset
from .files import require_dir, require_items
from .labels import IGNORE_INDEX, LabelMap
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
    └── {train,val,test}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png
        (CITY_SEQ_FRAME_gtFine_labelTrainIds.png is used instead where present)
"""
_IMAGE_SUFFIX = "_leftImg8bit.png"


class CityscapesDataset(PairedFilesDataset):
    """One split of Cityscapes fine annotations, read with the official label table."""

    classes = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE
    layout = CITYSCAPES_LAYOUT

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
    """Cityscapes, 19 classes: train 2975, val 500 (and test 1525 without public labels) images at 1024x2048.

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/``; the rest as ``SegmentationDataModule``.
    """

    dataset_type = CityscapesDataset
    optional_splits = ("test",)
    default_transforms = TransformConfig(crop_size=(512, 1024), scale_range=(0.5, 2.0), color_jitter=0.2)
