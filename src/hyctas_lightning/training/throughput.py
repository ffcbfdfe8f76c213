"""Training throughput: images per second, logged without holding the GPU back.

Lightning's ``ThroughputMonitor`` synchronises with the device after every batch so that each batch's time is
exact; on a GPU that the host keeps queueing work for (the supernet's steps), that wait drains the queue at every
step and the GPU idles while the next step is prepared. ``TrainingThroughput`` logs the same figures, under the
same names, from the wall clock alone: over a window of batches the host cannot run more than a step or two ahead
of the device (logging and checkpoints synchronise now and then), so the rate over the window is the device's. In
a config::

    callbacks:
      - class_path: hyctas_lightning.training.TrainingThroughput
        init_args:
          window_size: 50

It logs, over the last ``window_size`` batches, ``train/device/samples_per_sec`` (one process) and, on several
processes, ``train/samples_per_sec``: the images per second of all of them together (validation time excluded,
time between batches included); ``train/samples`` and ``train/batches`` count them. ``ThroughputMonitor`` with
``batch_size_fn: hyctas_lightning.training.throughput.images_in_batch`` logs the same, synchronising.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Optional

import lightning as L
from lightning.fabric.utilities.throughput import Throughput
from lightning.pytorch.utilities import rank_zero_only

# the figure of all processes together (logged only on several), then one process's: the first one found counts
THROUGHPUT_METRICS = ("train/samples_per_sec", "train/device/samples_per_sec")


def images_in_batch(batch: Mapping[str, Any]) -> int:
    """The number of images in a batch of this package's data modules (``batch["image"]`` is N x 3 x H x W).

    Args:
        batch: a collated batch.
    """
    return len(batch["image"])


class TrainingThroughput(L.Callback):
    """Images per second of training, as ``ThroughputMonitor`` logs them (see the module), without its device
    synchronisation after every batch; logged every ``trainer.log_every_n_steps`` optimiser steps.

    Args:
        window_size: batches the rates are averaged over.
        batch_size_fn: the number of images in a batch.
    """

    def __init__(self, window_size: int = 50, batch_size_fn: Callable[[Any], int] = images_in_batch) -> None:
        self.window_size = window_size
        self.batch_size_fn = batch_size_fn
        self._throughput: Optional[Throughput] = None
        self._t0 = self._validation_t0 = 0.0
        self._samples = self._batches = 0
        self._logged_step = -1

    @rank_zero_only
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._throughput = Throughput(world_size=trainer.world_size, window_size=self.window_size)
        self._t0, self._samples, self._batches = time.perf_counter(), 0, 0

    @rank_zero_only
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._samples += self.batch_size_fn(batch)
        self._batches += 1
        self._throughput.update(time=time.perf_counter() - self._t0, batches=self._batches, samples=self._samples)
        step = trainer.global_step
        if trainer.logger is not None and step % trainer.log_every_n_steps == 0 and step != self._logged_step:
            self._logged_step = step
            metrics = {f"train/{k}": v for k, v in self._throughput.compute().items()}
            trainer.logger.log_metrics(metrics, step=step)

    @rank_zero_only
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_t0 = time.perf_counter()

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._throughput is not None and not trainer.sanity_checking:
            self._t0 += time.perf_counter() - self._validation_t0  # validation is not training time
