"""Segmentation accuracy: per-class IoU accumulated over a whole split, mIoU and a printable table."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torchmetrics.classification import MulticlassJaccardIndex


def per_class_iou(num_classes: int, ignore_index: int = 255, sync_on_compute: bool = True) -> MulticlassJaccardIndex:
    """A metric giving each class's IoU over everything it has seen; a class absent from both predictions and
    labels is NaN (not 0), so it neither shows as a failure nor drags the mean down.

    Args:
        num_classes: classes of the predictions.
        ignore_index: label that counts nowhere.
        sync_on_compute: sum the counts of every process of a distributed run (False: this process's own).
    """
    return MulticlassJaccardIndex(num_classes, ignore_index=ignore_index, average="none", zero_division=math.nan,
                                  sync_on_compute=sync_on_compute)


def mean_iou(ious: torch.Tensor) -> torch.Tensor:
    """mIoU over the classes that occur (the benchmarks' definition)."""
    return ious.nanmean() if not ious.isnan().all() else ious.new_zeros(())


def format_iou_table(ious: torch.Tensor, classes: Optional[Sequence[str]] = None, title: str = "IoU") -> str:
    """Per-class IoU in percent as aligned text, absent classes shown as '-', mIoU last."""
    names = list(classes) if classes else [f"class {i}" for i in range(len(ious))]
    if len(names) != len(ious):
        raise ValueError(f"{len(names)} class names for {len(ious)} classes")
    width = max(len(n) for n in names + ["mIoU"])
    rows = [f"{'class':<{width}}  {title:>7}", "-" * (width + 9)]
    rows += [f"{n:<{width}}  {'-' if v != v else f'{100 * v:.2f}':>7}" for n, v in zip(names, ious.tolist())]
    rows += ["-" * (width + 9), f"{'mIoU':<{width}}  {100 * mean_iou(ious).item():>7.2f}"]
    return "\n".join(rows)
