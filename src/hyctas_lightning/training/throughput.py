"""Training throughput (images per second) as a callback, so any ``hyctas fit`` run can report it."""
from __future__ import annotations

import time
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info


class ImagesPerSecond(L.Callback):
    """Times training batches after ``warmup`` steps (worker start-up, cuDNN and allocator warm-up excluded)
    and logs ``train/images_per_s``; at the end of fit prints the total. Time between batches (data loading
    not hidden by the workers) counts, so the figure is what a run really achieves.

    Args:
        warmup: training batches not timed.
    """

    def __init__(self, warmup: int = 10) -> None:
        self.warmup = warmup
        self.images = 0
        self.steps = 0
        self.start: Optional[float] = None
        self.elapsed = 0.0

    @staticmethod
    def _now(trainer: L.Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        return time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self.start = self._now(trainer)
        elif self.start is not None:
            self.images += len(batch["image"])
            self.elapsed = self._now(trainer) - self.start
            pl_module.log("train/images_per_s", self.images / self.elapsed, prog_bar=True, on_step=True)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is not None:  # validation between epochs is not training time
            self.start = self._now(trainer) - self.elapsed

    @property
    def images_per_second(self) -> Optional[float]:
        return self.images / self.elapsed if self.elapsed > 0 else None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.images_per_second is not None:
            rank_zero_info(f"training throughput: {self.images} images in {self.elapsed:.1f} s after "
                           f"{self.warmup} warm-up steps = {self.images_per_second:.1f} images/s")
