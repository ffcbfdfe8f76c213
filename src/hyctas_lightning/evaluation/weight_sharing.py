"""Estimating a sub-network through a weight-sharing supernet (paper section 4.2, 'Search'): recalibrate its
BatchNorm statistics on training images, then measure mIoU on validation images.

This is the one recalibrate-and-score path: supernet validation (``SupernetModule``), the ranking diagnostic
and the search's evaluator all go through :class:`SubnetScorer`, so the same architecture, calibration images
and validation images give the same number everywhere.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassJaccardIndex

from hyctas_lightning.data.base import reseed_worker
from hyctas_lightning.search_space import Architecture

from .batchnorm import Stacked, bn_state, load_bn_state, recalibrate_bn, stacks_batches
from .metrics import mean_iou, per_class_iou

Batch = Tuple[torch.Tensor, torch.Tensor]


def collect_images(datamodule: Any, split: str, limit: Optional[int], seed: int, with_masks: bool) -> List:
    """Batches of a split, up to ``limit`` images, held in memory for every sub-network (drawn once, seeded).

    The images come from a private loader over a copy of the split's dataset reseeded with ``seed``: the training
    split shuffled and augmented as in training (the distribution BN saw), the validation split in order. The same
    call gives the same images every time and on every process of a run spread over several (a data module
    attached to such a Trainer hands out one share of its evaluation splits), and neither the training loader's
    augmentation stream nor the global random state is touched.

    Args:
        datamodule: a LightningDataModule with ``train_dataloader`` and ``val_dataloader``.
        split: ``train`` or ``val``.
        limit: the number of images to keep (None: the whole split).
        seed: seed of the shuffling and augmentation.
        with_masks: keep ``(images, masks)`` pairs instead of images alone.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split: 'train' or 'val', got '{split}'")
    datamodule.setup("fit" if split == "train" else "validate")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        train = split == "train"
        loader = whole_split(datamodule.train_dataloader() if train else datamodule.val_dataloader(), train, seed)
        batches, seen = [], 0
        for batch in loader:
            take = batch["image"].shape[0] if limit is None else min(batch["image"].shape[0], limit - seen)
            images = batch["image"][:take]
            batches.append((images, batch["mask"][:take]) if with_masks else images)
            seen += take
            if limit is not None and seen >= limit:
                break
    if not batches:
        raise ValueError(f"the {split} split gave no images to estimate sub-networks with")
    return batches


def whole_split(loader: DataLoader, shuffle: bool, seed: int) -> DataLoader:
    """A loader like ``loader`` over a copy of its whole dataset reseeded with ``seed`` (its workers reseed from
    torch's stream), in order or shuffled from ``seed``.

    Args:
        loader: the data module's loader of the split.
        shuffle: draw the images in a random order.
        seed: seed of the order and of the augmentation.
    """
    dataset = copy.deepcopy(loader.dataset)
    if hasattr(dataset, "reseed"):
        dataset.reseed(seed)
    return DataLoader(dataset, batch_size=loader.batch_size, shuffle=shuffle, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, worker_init_fn=reseed_worker if loader.num_workers else None,
                      generator=torch.Generator().manual_seed(seed))


def pass_groups(batches: Sequence[Any], images_per_pass: Optional[int],
                images: Callable[[Any], torch.Tensor] = lambda b: b) -> List[List[Any]]:
    """``batches`` in runs of consecutive batches of one shape holding up to ``images_per_pass`` images together (a
    batch alone when it holds more, or when ``images_per_pass`` is None): what one pass of a network can take.

    Args:
        batches: the batches, in order.
        images_per_pass: the most images in one run (None: one batch per run).
        images: the image tensor of a batch.
    """
    runs: List[List[Any]] = []
    for batch in batches:
        x = images(batch)
        last = runs[-1] if runs else None
        if (images_per_pass and last and images(last[0]).shape == x.shape
                and (len(last) + 1) * x.shape[0] <= images_per_pass):
            last.append(batch)
        else:
            runs.append([batch])
    return runs


class SubnetScorer:
    """Recalibrate-and-score for sub-networks of one supernet.

    The supernet runs several batches at once (``images_per_pass``): on a GPU a sub-network's pass costs mostly
    kernel launches, so 8 batches in one pass take little longer than one. Validation in eval mode does not depend
    on the batching (:meth:`passes` stacks it once for many sub-networks); recalibration stacks equal training
    batches (:class:`~.batchnorm.Stacked`) whose BatchNorm statistics are still taken batch by batch, so the scores
    equal one-batch-at-a-time scores up to rounding.

    Args:
        supernet: the weight-sharing network; ``supernet(images, arch)`` gives logits at the input size.
        calibration: batches of training images for BN recalibration (see :func:`collect_images`).
        num_classes: classes of the logits.
        ignore_index: label ignored by the metric.
        images_per_pass: the most images the supernet runs at once (None: one batch at a time).
    """

    def __init__(self, supernet: nn.Module, calibration: Sequence[torch.Tensor], num_classes: int,
                 ignore_index: int = 255, images_per_pass: Optional[int] = 128) -> None:
        self.supernet = supernet
        self.images_per_pass = images_per_pass
        stack = images_per_pass if stacks_batches(supernet) else None
        self.calibration = [Stacked(torch.cat(run), len(run)) if len(run) > 1 else run[0]
                            for run in pass_groups(list(calibration), stack)]
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def metric(self) -> MulticlassJaccardIndex:
        """Per-class IoU on the supernet's device; its mean over the classes present is the estimate (the same
        definition as retraining's ``val/mIoU``). It scores what this process sees: a search spread over several
        processes scores a different candidate on each."""
        device = next(self.supernet.parameters()).device
        # one process's own score, never summed with what other processes are scoring
        return per_class_iou(self.num_classes, self.ignore_index, sync_on_compute=False).to(device)

    def calibrate(self, arch: Architecture) -> int:
        """Re-estimate every BN statistic for ``arch`` (left in place, eval mode); returns the images used."""
        device = next(self.supernet.parameters()).device
        return recalibrate_bn(self.supernet, lambda x: self.supernet(x.to(device), arch), self.calibration)

    def calibrated_state(self, arch: Architecture) -> Dict[str, torch.Tensor]:
        """BN statistics of ``arch`` after recalibration; the supernet's own statistics are restored."""
        saved = bn_state(self.supernet)
        was_training = self.supernet.training
        try:
            self.calibrate(arch)
            return bn_state(self.supernet)
        finally:
            load_bn_state(self.supernet, saved)
            self.supernet.train(was_training)

    def passes(self, validation: Sequence[Batch]) -> List[Batch]:
        """``validation`` stacked into batches of up to ``images_per_pass`` images, once for all the sub-networks
        scored on it (eval mode: the scores do not depend on the batching)."""
        return [tuple(torch.cat(t) for t in zip(*run)) if len(run) > 1 else run[0]
                for run in pass_groups(validation, self.images_per_pass, images=lambda batch: batch[0])]

    @torch.no_grad()
    def miou(self, arch: Architecture, validation: Sequence[Batch]) -> float:
        """mIoU of ``arch`` on ``validation`` (batches as given: see :meth:`passes`) with the BN statistics in place
        (call :meth:`calibrate` first)."""
        return self.score(self.predict(arch, validation))

    @torch.no_grad()
    def predict(self, arch: Architecture, validation: Sequence[Batch]) -> List[Batch]:
        """``arch``'s predicted classes and the masks, per batch of ``validation``, with the BN statistics in place.
        Nothing here waits for the device: on a GPU the passes are only queued, so the host is free until
        :meth:`score` reads them (the metric's update synchronises)."""
        self.supernet.eval()
        device = next(self.supernet.parameters()).device
        return [(self.supernet(images.to(device), arch).argmax(1), masks.to(device)) for images, masks in validation]

    def score(self, predictions: Sequence[Batch]) -> float:
        """mIoU of :meth:`predict`'s ``(predictions, masks)`` batches."""
        metric = self.metric()
        for predicted, masks in predictions:
            metric.update(predicted, masks)
        return float(mean_iou(metric.compute()))

    def __call__(self, arch: Architecture, validation: Sequence[Batch], restore: bool = True) -> float:
        """Recalibrate for ``arch`` and score it; with ``restore`` the supernet's statistics come back after."""
        saved = bn_state(self.supernet) if restore else None
        try:
            self.calibrate(arch)
            return self.miou(arch, validation)
        finally:
            if saved is not None:
                load_bn_state(self.supernet, saved)

    def score_all(self, archs: Dict[str, Architecture], validation: Sequence[Batch],
                  progress: Optional[Callable[[str, float], None]] = None) -> Dict[str, float]:
        """Estimates of several sub-networks by name; ``progress(name, miou)`` is called after each."""
        scores, validation = {}, self.passes(validation)
        for name, arch in archs.items():
            scores[name] = self(arch, validation)
            if progress is not None:
                progress(name, scores[name])
        return scores
