"""``hyctas data check``: scan every sample of a dataset without training, report sizes, the class histogram,
suggested class weights and every problem found (not only the first), so a broken copy is fixed before a long run
rather than during it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
from torch.utils.data import DataLoader, Dataset

from .base import FileDataModule, SegmentationDataModule, SegmentationDataset
from .files import DatasetError, MissingSplitError
from .labels import IGNORE_INDEX


@dataclass
class SplitReport:
    """What one split holds: samples scanned, labelled pixels per class, ignored pixels, bad samples.

    Args:
        samples: samples scanned.
        pixels: labelled pixels per class (int64, one entry per class).
        ignored: pixels with the ignore label.
        bad: samples that failed to load.
    """

    samples: int
    pixels: np.ndarray
    ignored: int = 0
    bad: int = 0

    @property
    def shares(self) -> np.ndarray:
        """Each class's share of the labelled (not ignored) pixels."""
        return self.pixels / max(int(self.pixels.sum()), 1)

    @property
    def class_weights(self) -> np.ndarray:
        """Median-frequency balancing (as SegNet weighs CamVid's classes): the median share of the classes present
        over each class's own share, so rare classes count more in a weighted loss; 0 for a class with no pixels."""
        shares = self.shares
        present = shares > 0
        if not present.any():
            return np.zeros_like(shares)
        return np.where(present, np.median(shares[present]) / np.where(present, shares, 1.0), 0.0)


@dataclass
class DataReport:
    """The result of a scan; ``ok`` is False when any problem was found.

    Args:
        dataset: the dataset's name.
        classes: class names, in training-id order.
        splits: the report of each scanned split.
        absent: optional splits that are not there (not a problem).
        problems: everything wrong, one readable line each.
    """

    dataset: str
    classes: Tuple[str, ...]
    splits: Dict[str, SplitReport] = field(default_factory=dict)
    absent: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def weights_split(self) -> Optional[str]:
        """The split the suggested class weights come from: ``train``, else the first scanned."""
        return "train" if "train" in self.splits else next(iter(self.splits), None)

    def format(self) -> str:
        """Split sizes, the class histogram as a table with class names and suggested class weights, then every
        problem."""
        lines = [f"dataset: {self.dataset}", "", f"{'split':<8}{'samples':>9}{'bad':>6}{'labelled px':>16}"
                 f"{'ignored px':>14}"]
        for name, split in self.splits.items():
            lines.append(f"{name:<8}{split.samples:>9}{split.bad:>6}{int(split.pixels.sum()):>16}{split.ignored:>14}")
        lines += [f"{name:<8}  absent (optional)" for name in self.absent]
        lines += ["", self._histogram(), ""]
        if self.weights_split is not None:
            weights = ", ".join(f"{w:.3g}" for w in self.splits[self.weights_split].class_weights)
            lines += [f"suggested class weights (median frequency of the {self.weights_split} pixels, for a "
                      f"weighted loss): [{weights}]", ""]
        lines.append(f"{len(self.problems)} problem(s)" + (":" if self.problems else ""))
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)

    def _histogram(self) -> str:
        width = max([len(name) for name in self.classes] + [5])
        weights = self.splits[self.weights_split].class_weights if self.weights_split is not None else None
        header = f"{'id':>3}  {'class':<{width}}" + "".join(f"{name + ' px':>15}{'share':>8}" for name in self.splits)
        rows = [header + (f"{'weight':>9}" if weights is not None else "")]
        for k, name in enumerate(self.classes):
            cells = "".join(f"{int(s.pixels[k]):>15}{100 * s.shares[k]:>7.2f}%" for s in self.splits.values())
            rows.append(f"{k:>3}  {name:<{width}}{cells}" + (f"{weights[k]:>9.3f}" if weights is not None else ""))
        return "\n".join(rows)


class _Scan(Dataset):
    """Wraps a dataset so loader workers return (pixel counts, None) or (None, problem) per sample of its whole
    ``max_samples`` subset, the samples ``skip_bad_samples`` would leave out included."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset.subset)

    def __getitem__(self, index: int) -> Tuple[Optional[np.ndarray], Optional[str]]:
        try:
            mask = self.dataset.load_item(self.dataset.subset[index]).mask
        except DatasetError as error:
            return None, str(error)
        return np.bincount(mask.ravel(), minlength=256), None


def _as_is(item: Tuple[Optional[np.ndarray], Optional[str]]) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """Loader ``collate_fn`` that keeps numpy counts as they are (the default would make tensors)."""
    return item


def _scan_split(dataset: SegmentationDataset, num_classes: int, num_workers: int) -> Tuple[SplitReport, List[str]]:
    report, problems = SplitReport(len(dataset.subset), np.zeros(num_classes, np.int64)), []
    for counts, problem in DataLoader(_Scan(dataset), batch_size=None, num_workers=num_workers,
                                           collate_fn=_as_is):
        if problem is not None:
            report.bad += 1
            problems.append(f"{dataset.split}: {problem}")
            continue
        report.pixels += counts[:num_classes]
        report.ignored += int(counts[IGNORE_INDEX])
    return report, problems


def check_data(datamodule: SegmentationDataModule, num_workers: int = 0) -> DataReport:
    """Scan every split of ``datamodule`` (capped by its ``max_samples``) and collect every problem."""
    where = f" at {datamodule.root}" if isinstance(datamodule, FileDataModule) else ""
    report = DataReport(type(datamodule).__name__ + where, tuple(datamodule.classes))
    for split in datamodule.splits + datamodule.optional_splits:
        try:
            dataset = datamodule.dataset(split)
        except MissingSplitError as error:
            if split in datamodule.optional_splits:
                report.absent.append(split)
            else:
                report.problems.append(f"{split}: {error}")
            continue
        except DatasetError as error:
            report.problems.append(f"{split}: {error}")
            continue
        report.splits[split], problems = _scan_split(dataset, len(report.classes), num_workers)
        report.problems += problems
    return report
