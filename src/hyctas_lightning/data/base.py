"""The shared dataset and DataModule bases: sample loading with validation, subsets, transforms and loaders.

A dataset subclass only says where its samples are and how a raw label becomes training ids; everything else
(``max_samples``, ``skip_bad_samples``, augmentation, panoptic targets, batching, padding, worker seeding) lives
here once.
"""
from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, is_dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Dict, List, NamedTuple, Optional, Sequence, Tuple, Type

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, get_worker_info

from hyctas_lightning.distributed import fingerprint, rank

from .files import DatasetError, check_same_size, read_image, read_label, require_root
from .labels import IGNORE_INDEX, VOID, Colour, LabelMap
from .panoptic import PanopticTargetConfig, panoptic_targets, thing_mask
from .transforms import SegmentationTransform, TransformConfig

log = logging.getLogger(__name__)


class Sample(NamedTuple):
    """One decoded sample before augmentation: uint8 RGB (H, W, 3), uint8 training ids (H, W), a name; for
    panoptic data also the panoptic id map (H, W; see ``labels.LABEL_DIVISOR``) and the annotation's image id."""

    image: np.ndarray
    mask: np.ndarray
    name: str
    panoptic: Optional[np.ndarray] = None
    image_id: Any = None


def deterministic_subset(count: int, limit: Optional[int]) -> List[int]:
    """``limit`` indices spread at random over all ``count`` (seed 0, sorted), the same on every run; all if no limit.

    Random rather than the first ``limit``: sorted file lists group by city or scene, and a capped split (quick
    runs, BatchNorm recalibration) should still see all of them.

    Args:
        count: size of the full split.
        limit: how many to keep (at least 1), or None for all.
    """
    if limit is None or limit >= count:
        return list(range(count))
    if limit < 1:
        raise ValueError(f"max_samples must be at least 1 or null, got {limit}")
    return sorted(np.random.default_rng(0).choice(count, size=limit, replace=False).tolist())


class SegmentationDataset(Dataset, ABC):
    """Samples as dicts ``{"image", "mask", "name", "image_size"}`` (``image_size``: (H, W) before resizing and
    padding, so predictions can be returned at the image's own size); subclasses implement ``load_item``.

    With ``panoptic`` (target settings) a dataset that has instances (``thing_classes``) also yields the
    panoptic targets of ``panoptic.panoptic_targets`` computed after augmentation, the sample's ``image_id`` and
    its ``image_size`` (H, W) before any resizing or padding.

    Every problem with a sample raises ``DatasetError`` naming the file. With ``skip_bad_samples`` every sample is
    loaded once, on first use, and those that fail are left out of the split: not counted, not replaced by
    another sample, and listed with their errors in one warning, so a run survives a few broken files without
    hiding them (``hyctas data check`` still scans them all).

    Args:
        num_items: samples in the full split.
        split: the split's name (``train``, ``val``, ...), used in messages.
        transform: augmentation pipeline; None normalises only (default evaluation transforms).
        max_samples: cap the split to this many samples, a fixed random subset (quick runs); None keeps all.
        skip_bad_samples: leave out (and list in a warning) the samples that fail to load instead of raising.
        panoptic: panoptic target settings; None yields semantic samples only.
    """

    classes: ClassVar[Sequence[str]] = ()
    thing_classes: ClassVar[Sequence[str]] = ()
    palette: ClassVar[Sequence[Colour]] = ()
    ignore_index: ClassVar[int] = IGNORE_INDEX
    layout: ClassVar[str] = ""

    def __init__(self, num_items: int, split: str, transform: Optional[SegmentationTransform] = None,
                 max_samples: Optional[int] = None, skip_bad_samples: bool = False,
                 panoptic: Optional[PanopticTargetConfig] = None) -> None:
        self.split = split
        self.transform = transform or SegmentationTransform(TransformConfig(), train=False)
        self.subset = deterministic_subset(num_items, max_samples)
        self.skip_bad_samples = skip_bad_samples
        self.skipped: List[str] = []  # the errors of the samples left out (with skip_bad_samples)
        self._indices: Optional[List[int]] = None
        if panoptic is not None and not self.thing_classes:
            raise ValueError(f"{type(self).__name__} has no instance annotations, so it cannot give panoptic targets; "
                             "use COCO panoptic, Cityscapes or the synthetic streets, or drop `panoptic`")
        self.panoptic = panoptic

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def thing_ids(self) -> Tuple[int, ...]:
        """Class indices of the thing classes (countable objects with instances)."""
        return tuple(list(self.classes).index(name) for name in self.thing_classes)

    @abstractmethod
    def load_item(self, item: int) -> Sample:
        """Decode and validate item ``item`` of the full split (before ``max_samples``)."""

    @property
    def indices(self) -> List[int]:
        """The items of the full split this dataset serves: the ``max_samples`` subset, less the samples that fail
        to load when ``skip_bad_samples`` is set."""
        if self._indices is None:
            self._indices = self._good_items() if self.skip_bad_samples else self.subset
        return self._indices

    def problem(self, item: int) -> Optional[str]:
        """Why item ``item`` of the full split cannot be loaded, or None if it loads.

        Args:
            item: an index into the full split.
        """
        try:
            self.load_item(item)
        except DatasetError as error:
            return str(error)
        return None

    def _good_items(self) -> List[int]:
        """The subset without the samples that fail to load, each loaded once (in threads: decoding releases the
        GIL); what was left out is kept in ``skipped`` and listed in one warning."""
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            problems = list(pool.map(self.problem, self.subset))
        self.skipped = [p for p in problems if p is not None]
        good = [item for item, p in zip(self.subset, problems) if p is None]
        if not good:
            raise DatasetError(f"every sample of the {self.split} split is bad, e.g. {self.skipped[0]}; run "
                               f"`hyctas data check` for the full list")
        if self.skipped and rank() == 0:
            log.warning("skip_bad_samples: left out %d of %d samples of the %s split (%s) that fail to load: %s",
                        len(self.skipped), len(self.subset), self.split, type(self).__name__,
                        "; ".join(self.skipped))
        return good

    def load(self, index: int) -> Sample:
        """Sample ``index`` of this (possibly capped) split, validated, untransformed."""
        return self.load_item(self.indices[index])

    def reseed(self, seed: int) -> None:
        """Give this dataset's augmentation its own random stream.

        Args:
            seed: the new seed.
        """
        self.transform.reseed(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        sample = self.load(index)
        if self.panoptic is None:
            image, mask = self.transform(sample.image, sample.mask)
            return {"image": image, "mask": mask, "name": sample.name, "image_size": tuple(sample.image.shape[:2])}
        image, mask, panoptic = self.transform(sample.image, sample.mask, sample.panoptic)
        targets = panoptic_targets(mask, panoptic, thing_mask(self.num_classes, self.thing_ids), self.panoptic)
        image_id = sample.name if sample.image_id is None else sample.image_id
        return {"image": image, "mask": mask, "name": sample.name, "image_id": image_id,
                "image_size": tuple(sample.image.shape[:2]), **targets}


@dataclass(frozen=True)
class FilePair:
    """An image file, its label file, the table that maps the label's raw values, and the sample's name.

    Args:
        image: the RGB image file.
        label: the single-channel label PNG.
        label_map: maps the label's raw values to training ids.
        name: the sample's name (used for prediction files and messages).
    """

    image: Path
    label: Path
    label_map: LabelMap
    name: str


class PairedFilesDataset(SegmentationDataset):
    """Datasets stored as image files with one single-channel label PNG each; subclasses find the pairs.

    Args:
        root: the dataset folder, laid out as ``layout`` describes.
        split: the split to read.
        **options: passed to ``SegmentationDataset`` (``transform``, ``max_samples``, ...).
    """

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


# What padding holds in each batched map: the ignore label in masks, void in panoptic maps, and 0 elsewhere (the
# normalised mean in images, no weight in loss weights), so padding never counts.
PAD_VALUES = {"mask": IGNORE_INDEX, "panoptic": VOID}


def pad_collate(batch: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack samples of different sizes (whole-image evaluation) by padding their maps (tensors of 2 or more
    dimensions, spatial last) bottom/right with ``PAD_VALUES``; other entries become lists.

    Args:
        batch: sample dicts as a ``SegmentationDataset`` returns them.
    """
    height = max(item["image"].shape[1] for item in batch)
    width = max(item["image"].shape[2] for item in batch)
    out: Dict[str, Any] = {}
    for key, first in batch[0].items():
        if not (isinstance(first, torch.Tensor) and first.dim() >= 2):
            out[key] = [item[key] for item in batch]
            continue
        stacked = _blank((len(batch), *first.shape[:-2], height, width), first.dtype, PAD_VALUES.get(key, 0))
        for k, item in enumerate(batch):
            h, w = item[key].shape[-2:]
            stacked[k, ..., :h, :w] = item[key]
        out[key] = stacked
    return out


def rank_seed(seed: int, rank: int) -> int:
    """``seed`` itself for process 0, an unrelated seed derived from both for the others: processes that were all
    seeded alike (``seed_everything`` on every rank) still augment their shares of the data independently.

    Args:
        seed: the seed all processes share.
        rank: the process's global rank.
    """
    return seed if rank == 0 else fingerprint(f"{seed}:{rank}") % 2**32


def reseed_worker(worker_id: int, rank: int = 0) -> None:
    """DataLoader ``worker_init_fn``: each worker augments from its own seed (torch's per-worker seed, made distinct
    per training process with ``rank``).

    Args:
        worker_id: the loader worker's index (unused; the worker's own seed already differs per worker).
        rank: the training process's global rank.
    """
    info = get_worker_info()
    info.dataset.reseed(rank_seed(info.seed, rank))


class RepeatedRandomSampler(RandomSampler):
    """``repeats`` shuffled passes over a dataset as one epoch (each pass a fresh permutation). A subclass, so that
    under several processes Lightning shards its indices (``DistributedSamplerWrapper``) instead of replacing it by
    a sampler of one pass.

    Args:
        dataset: the training split.
        repeats: passes per epoch.
    """

    def __init__(self, dataset: Dataset, repeats: int) -> None:
        super().__init__(dataset, num_samples=len(dataset) * repeats)


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
        skip_bad_samples: leave out (and list in a warning) the samples that fail to load instead of raising.
        test_split: the split test and predict read; None uses the dataset's ``default_test_split``.
        panoptic: panoptic target settings (``{}`` for Panoptic-DeepLab's); None gives semantic samples only.
        epoch_repeats: passes over the training split in one epoch (one loader pass). A small split in large
            batches makes epochs of a few steps, and each epoch's first batches are a bubble the GPU waits for (the
            workers start the new pass only when it begins: e.g. CamVid's 367 images in batches of 48 are 7 steps);
            several passes per epoch pay it once. Epoch-based settings (``max_epochs``, schedules per epoch,
            validation every N epochs) then count these longer epochs.
    """

    dataset_type: ClassVar[Type[SegmentationDataset]]
    splits: ClassVar[Tuple[str, ...]] = ("train", "val")
    optional_splits: ClassVar[Tuple[str, ...]] = ()
    default_test_split: ClassVar[str] = "val"
    default_transforms: ClassVar[TransformConfig] = TransformConfig()

    def __init__(self, batch_size: int = 8, num_workers: int = 0, pin_memory: bool = True,
                 persistent_workers: bool = True, drop_last: bool = True, max_samples: Optional[int] = None,
                 transforms: Optional[TransformConfig] = None, skip_bad_samples: bool = False,
                 test_split: Optional[str] = None, panoptic: Optional[PanopticTargetConfig] = None,
                 epoch_repeats: int = 1) -> None:
        super().__init__()
        if epoch_repeats < 1:
            raise ValueError(f"epoch_repeats: passes over the training split per epoch, at least 1, got "
                             f"{epoch_repeats}")
        self.save_hyperparameters()
        for key in ("transforms", "panoptic"):  # as plain data, so the checkpoints that hold them load without code
            if is_dataclass(self.hparams.get(key)):
                self.hparams[key] = asdict(self.hparams[key])
        self.transforms = transforms or self.default_transforms
        self.panoptic = panoptic  # the object itself: under LightningCLI ``hparams`` holds its dict form
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
                skip_bad_samples=self.hparams.skip_bad_samples, panoptic=self.panoptic)
            if key == ("train", True):
                self._set_augmentation(self._datasets[key])
        return self._datasets[key]

    def _set_augmentation(self, train: SegmentationDataset) -> None:
        """Continue the saved augmentation stream (on a resume), or start from torch's seed; either way made
        distinct on every training process but the first (a checkpoint holds the first's stream only)."""
        if self._augmentation_state is not None:
            train.transform.set_random_state(self._augmentation_state)
            base = fingerprint(repr(self._augmentation_state)) % 2**32
        else:
            base = torch.initial_seed()
        if rank() > 0:
            train.reseed(rank_seed(base, rank()))

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
            self._set_augmentation(train)

    def _loader(self, dataset: SegmentationDataset, train: bool, share: bool = False) -> DataLoader:
        workers, repeats = self.hparams.num_workers, self.hparams.epoch_repeats if train else 1
        sampler = self._share(dataset) if share else RepeatedRandomSampler(dataset, repeats) if repeats > 1 else None
        return DataLoader(
            dataset, batch_size=self.hparams.batch_size, shuffle=train and sampler is None, sampler=sampler,
            num_workers=workers, collate_fn=pad_collate,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
            drop_last=train and self.hparams.drop_last and len(dataset) * repeats > self.hparams.batch_size,
            persistent_workers=self.hparams.persistent_workers and workers > 0,
            worker_init_fn=partial(reseed_worker, rank=rank()) if workers > 0 else None)

    def _share(self, dataset: SegmentationDataset) -> Optional[Sampler]:
        """Under a Trainer of several processes, this process's share of an evaluation split, no sample in two shares:
        Lightning's own sampler repeats samples to even the shares out, and the metrics would count them twice."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1 or len(dataset) < trainer.world_size:
            return None
        return UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                            shuffle=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("train", train=True), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"), train=False, share=True)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset(self.test_split), train=False, share=True)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.dataset(self.test_split), train=False)  # Lightning shares prediction without repeats

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

    @property
    def thing_classes(self) -> Tuple[str, ...]:
        return tuple(self.dataset_type.thing_classes)

    @property
    def thing_ids(self) -> Tuple[int, ...]:
        """Class indices of the thing classes, for panoptic post-processing and PQ."""
        return tuple(self.classes.index(name) for name in self.thing_classes)

    @property
    def panoptic_categories(self) -> List[Dict[str, Any]]:
        """The COCO-format ``categories`` of predictions, in class order: ``id`` (the class index unless the dataset
        has official ids), ``name``, ``isthing``, ``color``."""
        things = set(self.thing_classes)
        return [{"id": k, "name": name, "isthing": int(name in things), "color": list(colour)}
                for k, (name, colour) in enumerate(zip(self.classes, self.palette))]


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
