"""ADE20K SceneParsing (ADEChallengeData2016): 150 classes; label 0 ("other") is ignored, the rest shift down by one."""
from __future__ import annotations

from typing import List

from .base import FileDataModule, FilePair, PairedFilesDataset
from .files import DatasetError, require_dir, require_items
from .labels import IGNORE_INDEX, LabelMap, generated_palette
from .registry import register_datamodule
from .transforms import TransformConfig

# The first name of each class, in order, from objectInfo150.csv of the MIT Scene Parsing benchmark
# (CSAILVision/sceneparsing); class k here is label value k + 1 in the annotation PNGs.
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van",
    "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name",
    "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce",
    "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board",
    "shower", "radiator", "glass", "clock", "flag",
)
ADE20K_PALETTE = generated_palette(len(ADE20K_CLASSES))

LABELS = LabelMap({0: IGNORE_INDEX, **{k: k - 1 for k in range(1, len(ADE20K_CLASSES) + 1)}},
                  known="ADE20K SceneParsing labels 0..150",
                  fix="Use the annotations of ADEChallengeData2016 (the full ADE20K index uses other ids)")

ADE20K_LAYOUT = """\
ROOT/
└── ADEChallengeData2016/
    ├── images/{training,validation}/ADE_*.jpg
    └── annotations/{training,validation}/ADE_*.png   (0 = other/ignored, 1..150 = classes)
"""
_FOLDERS = {"train": "training", "val": "validation"}


class ADE20KDataset(PairedFilesDataset):
    """One split of ADE20K SceneParsing; ``split`` is ``train`` or ``val``."""

    classes = ADE20K_CLASSES
    palette = ADE20K_PALETTE
    layout = ADE20K_LAYOUT

    def find_pairs(self, split: str) -> List[FilePair]:
        if split not in _FOLDERS:
            raise DatasetError(f"ADE20K has splits {list(_FOLDERS)}, not '{split}' (test labels are not public)")
        base = self.root / "ADEChallengeData2016"
        images = require_dir(base / "images" / _FOLDERS[split], f"ADE20K {split} images", self.root, self.layout)
        labels = require_dir(base / "annotations" / _FOLDERS[split], f"ADE20K {split} labels", self.root,
                             self.layout)
        pairs = [FilePair(path, labels / f"{path.stem}.png", LABELS, path.stem)
                 for path in sorted(images.glob("*.jpg"))]
        return require_items(pairs, f"ADE20K {split} split (*.jpg in {images})", self.root, self.layout)


@register_datamodule("ade20k")
class ADE20KDataModule(FileDataModule):
    """ADE20K SceneParsing, 150 classes: train 20210, val 2000 images of varying size; test reads val.

    Args:
        root: folder holding ``ADEChallengeData2016/``; the rest as ``SegmentationDataModule``.
    """

    dataset_type = ADE20KDataset
    default_transforms = TransformConfig(crop_size=(512, 512), scale_range=(0.5, 2.0), base_size=512,
                                         color_jitter=0.2)
