"""Training throughput through Lightning's ``ThroughputMonitor``: it needs to know how many samples a batch holds.

In a config::

    callbacks:
      - class_path: lightning.pytorch.callbacks.ThroughputMonitor
        init_args:
          batch_size_fn: hyctas_lightning.training.throughput.images_in_batch
          window_size: 50

It logs, over the last ``window_size`` batches, ``train/device/samples_per_sec`` (one process) and, on several
processes, ``train/samples_per_sec``: the images per second of all of them together (validation time excluded,
time between batches included).
"""
from __future__ import annotations

from typing import Any, Mapping

# the figure of all processes together (logged only on several), then one process's: the first one found counts
THROUGHPUT_METRICS = ("train/samples_per_sec", "train/device/samples_per_sec")


def images_in_batch(batch: Mapping[str, Any]) -> int:
    """The number of images in a batch of this package's data modules (``batch["image"]`` is N x 3 x H x W).

    Args:
        batch: a collated batch.
    """
    return len(batch["image"])

