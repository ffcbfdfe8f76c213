"""The shared dataset and DataModule bases: sample loading with validation, subsets, transforms and loaders.

A dataset subclass only says where its samples are and how a raw label becomes training ids; everything else
(``max_samples``, ``skip_bad_samples``, augmentation, batching, padding, worker seeding) lives here once.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, NamedTuple, Optional, Sequence, Tuple, Type

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from .files import DatasetError, check_same_size, read_image, read_label, require_root
from .labels import IGNORE_INDEX, Colour, LabelMap
from .transforms import SegmentationTransform, TransformConfig

log = logging.getLogger(__name__)


class Sample(NamedTuple):
    """One decoded sample before augmentation: uint8 RGB (H, W, 3), uint8 training ids (H, W), a name."""

    image: np.ndarray
    mask: np.ndarray
    name: str


def deterministic_subset(count: int, limit: Optional[int]) -> List[int]:
    """``limit`` indices spread at random over all ``count`` (seed 0, sorted), the same on every run; all if no limit.

    Random rather than the first ``limit``: sorted file lists group by city or scene, and a capped split (quick
    runs, BatchNorm recalibration) should still see all of them.
    """
    if limit is None or limit >= count:
        return list(range(count))
    if limit < 1:
        raise ValueError(f"max_samples must be at least 1 or null, got {limit}")
    return sorted(np.random.default_rng(0).choice(count, size=limit, replace=False).tolist())


class SegmentationDataset(Dataset, ABC):
    """Samples as dicts ``{"image", "mask", "name", "image_size"}`` (``image_size``: (H, W) before resizing and
    padding, so predictions can be returned at the image's own size); subclasses implement ``load_item``.

    Every problem with a sample raises ``DatasetError`` naming the file. With ``skip_bad_samples`` the bad
    sample is logged as a warning and the next good one is returned instead, so a run survives a few broken
    files without hiding them.
    """

    classes: ClassVar[Sequence[str]] = ()
    palette: ClassVar[Sequence[Colour]] = ()
    ignore_index: ClassVar[int] = IGNORE_INDEX
    layout: ClassVar[str] = ""

    def __init__(self, num_items: int, split: str, transform: Optional[SegmentationTransform] = None,
                 max_samples: Optional[int] = None, skip_bad_samples: bool = False) -> None:
        self.split = split
        self.transform = transform or SegmentationTransform(TransformConfig(), train=False)
        self.indices = deterministic_subset(num_items, max_samples)
        self.skip_bad_samples = skip_bad_samples

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @abstractmethod
    def load_item(self, item: int) -> Sample:
        """Decode and validate item ``item`` of the full split (before ``max_samples``)."""

    def load(self, index: int) -> Sample:
        """Sample ``index`` of this (possibly capped) split, validated, untransformed."""
        return self.load_item(self.indices[index])

    def reseed(self, seed: int) -> None:
        self.transform.reseed(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        sample = self._load_or_skip(index)
        image, mask = self.transform(sample.image, sample.mask)
        return {"image": image, "mask": mask, "name": sample.name, "image_size": tuple(sample.image.shape[:2])}

    def _load_or_skip(self, index: int) -> Sample:
        for offset in range(len(self)):
            try:
                return self.load((index + offset) % len(self))
            except DatasetError as error:
                if not self.skip_bad_samples:
                    raise
                log.warning("skipping a bad %s sample (%s split): %s", type(self).__name__, self.split, error)
        raise DatasetError(f"every sample of the {self.split} split is bad (see the warnings above); "
                           f"run `hyctas data check` for the full list")


@dataclass(frozen=True)
class FilePair:
    """An image file, its label file, the table that maps the label's raw values, and the sample's name."""

    image: Path
    label: Path
    label_map: LabelMap
    name: str


class PairedFilesDataset(SegmentationDataset):
    """Datasets stored as image files with one single-channel label PNG each; subclasses find the pairs."""

    def __init__(self, root: str | Path, split: str, **options: Any) -> None:
        self.root = require_root(root, self.layout)
        self.pairs = self.find_pairs(split)
        super().__init__(len(self.pairs), split, **options)

    @abstractmethod
    def find_pairs(self, split: str) -> List[FilePair]:
        """All pairs of ``split`` in a stable order; a missing split raises ``MissingSplitError``, an empty one
        ``DatasetError``, both with the expected layout."""

    def load_item(self, item: int) -> Sample:
        pair = self.pairs[item]
        image = read_image(pair.image)
        raw = read_label(pair.label, pair.image)
        check_same_size(pair.image, image, pair.label, raw)
        return Sample(image, pair.label_map.apply(raw, pair.label), pair.name)


def _blank(shape: Tuple[int, ...], dtype: torch.dtype, fill: float) -> torch.Tensor:
    """A filled batch tensor; in a loader worker it lives in shared memory, as ``default_collate`` does, so the
    batch reaches the main process without being copied again (4x the throughput on 2 cores)."""
    out = torch.empty(shape, dtype=dtype)
    if get_worker_info() is not None:
        out.share_memory_()
    return out.fill_(fill)


def pad_collate(batch: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack samples of different sizes (whole-image evaluation) by padding bottom/right: images with 0 (the
    normalised mean), masks with the ignore label so padding never counts."""
    height = max(item["image"].shape[1] for item in batch)
    width = max(item["image"].shape[2] for item in batch)
    images = _blank((len(batch), 3, height, width), batch[0]["image"].dtype, 0.0)
    masks = _blank((len(batch), height, width), torch.int64, IGNORE_INDEX)
    for k, item in enumerate(batch):
        h, w = item["mask"].shape
        images[k, :, :h, :w] = item["image"]
        masks[k, :h, :w] = item["mask"]
    out = {"image": images, "mask": masks, "name": [item["name"] for item in batch]}
    if all("image_size" in item for item in batch):  # the size before resizing and padding, to undo both
        out["image_size"] = [item["image_size"] for item in batch]
    return out


def reseed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: each worker augments from its own seed (torch's per-worker seed)."""
    info = get_worker_info()
    info.dataset.reseed(info.seed)


class SegmentationDataModule(L.LightningDataModule, ABC):
    """The shared DataModule: loaders, ``max_samples``, transforms and class metadata for every dataset.

    Subclasses set ``dataset_type`` and implement ``make_dataset``; ``splits`` must exist, ``optional_splits``
    may (``data check`` scans both), and ``test_split`` (default ``default_test_split``) feeds test/predict.

    Args:
        batch_size: samples per batch.
        num_workers: loader processes; 8 or more keeps a GPU fed on full-size images.
        pin_memory: page-locked batches for faster host-to-GPU copies (only used when CUDA is available).
        persistent_workers: keep workers alive between epochs (only when ``num_workers`` > 0).
        drop_last: drop the last incomplete training batch (kept when the split is smaller than one batch).
        max_samples: cap every split to this many samples, a fixed random subset.
        transforms: augmentation settings; None uses the dataset's ``default_transforms``.
        skip_bad_samples: log and skip bad samples instead of raising.
        test_split: the split test and predict read; None uses the dataset's ``default_test_split``.
    """

    dataset_type: ClassVar[Type[SegmentationDataset]]
    splits: ClassVar[Tuple[str, ...]] = ("train", "val")
    optional_splits: ClassVar[Tuple[str, ...]] = ()
    default_test_split: ClassVar[str] = "val"
    default_transforms: ClassVar[TransformConfig] = TransformConfig()

    def __init__(self, batch_size: int = 8, num_workers: int = 0, pin_memory: bool = True,
                 persistent_workers: bool = True, drop_last: bool = True, max_samples: Optional[int] = None,
                 transforms: Optional[TransformConfig] = None, skip_bad_samples: bool = False,
                 test_split: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.transforms = transforms or self.default_transforms
        self.test_split = test_split or self.default_test_split
        if self.test_split not in self.splits + self.optional_splits:
            raise ValueError(f"test_split '{self.test_split}' is not a split of {type(self).__name__}; "
                             f"choose one of {list(self.splits + self.optional_splits)}")
        self._datasets: Dict[Tuple[str, bool], SegmentationDataset] = {}
        self._augmentation_state: Optional[List[Dict[str, Any]]] = None

    @abstractmethod
    def make_dataset(self, split: str, **options: Any) -> SegmentationDataset:
        """A fresh dataset of ``split``; ``options`` go to ``SegmentationDataset.__init__``."""

    def dataset(self, split: str, train: bool = False) -> SegmentationDataset:
        """The dataset of ``split`` with training or evaluation transforms (built once, then reused)."""
        key = (split, train)
        if key not in self._datasets:
            self._datasets[key] = self.make_dataset(
                split, transform=SegmentationTransform(self.transforms, train), max_samples=self.hparams.max_samples,
                skip_bad_samples=self.hparams.skip_bad_samples)
            if key == ("train", True) and self._augmentation_state is not None:
                self._datasets[key].transform.set_random_state(self._augmentation_state)
        return self._datasets[key]

    def state_dict(self) -> Dict[str, Any]:
        """Where the training augmentation's random streams stand (the main process's copy, which augments when
        ``num_workers`` is 0; workers reseed from torch's stream), so a resumed run augments as an uninterrupted
        one would."""
        train = self._datasets.get(("train", True))
        return {"augmentation": train.transform.random_state()} if train is not None else {}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._augmentation_state = state_dict.get("augmentation")
        train = self._datasets.get(("train", True))
        if train is not None and self._augmentation_state is not None:
            train.transform.set_random_state(self._augmentation_state)

    def _loader(self, dataset: SegmentationDataset, train: bool) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset, batch_size=self.hparams.batch_size, shuffle=train, num_workers=workers,
            collate_fn=pad_collate, pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
            drop_last=train and self.hparams.drop_last and len(dataset) > self.hparams.batch_size,
            persistent_workers=self.hparams.persistent_workers and workers > 0,
            worker_init_fn=reseed_worker if workers > 0 else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("train", train=True), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"), train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset(self.test_split), train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    @property
    def classes(self) -> Tuple[str, ...]:
        return tuple(self.dataset_type.classes)

    @property
    def palette(self) -> List[Colour]:
        return list(self.dataset_type.palette)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def ignore_index(self) -> int:
        return IGNORE_INDEX


class FileDataModule(SegmentationDataModule):
    """A DataModule over a user's copy of a benchmark under ``root``, laid out as the official download unpacks.

    Args:
        root: the dataset folder (see the dataset's layout); other arguments as ``SegmentationDataModule``.
    """

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = require_root(root, self.dataset_type.layout)

    def make_dataset(self, split: str, **options: Any) -> SegmentationDataset:
        return self.dataset_type(self.root, split, **options)
