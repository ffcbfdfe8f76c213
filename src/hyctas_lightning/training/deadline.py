"""Stop a training run cleanly after a wall-clock budget and leave a checkpoint to resume from."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import lightning as L

from .checkpointing import LastCheckpoint


class Deadline(L.Callback):
    """Stop after ``seconds`` of *this process* and save ``last.ckpt`` when training stops for any reason, so a
    job cut into commands of limited length (e.g. 10 minutes each) resumes with ``--ckpt_path`` exactly where
    it stopped. Unlike Lightning's ``Timer`` it keeps no state in checkpoints: a resumed run gets its own budget.
    Beside a ``LastCheckpoint`` of the same file, that callback writes the final state (once, not twice).

    Args:
        seconds: the budget (None: no limit, only the save at the end).
        checkpoint: where to save (default: ``last.ckpt`` in the ModelCheckpoint's folder, else
            ``<default_root_dir>/checkpoints/last.ckpt``).
    """

    def __init__(self, seconds: Optional[float] = None, checkpoint: Optional[str] = None) -> None:
        self.seconds = seconds
        self.checkpoint = checkpoint
        self.start = time.perf_counter()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.seconds is not None and time.perf_counter() - self.start > self.seconds:
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self.path(trainer)
        if not any(isinstance(c, LastCheckpoint) and c.last_path().resolve() == path.resolve()
                   for c in trainer.checkpoint_callbacks):
            trainer.save_checkpoint(path)

    def path(self, trainer: L.Trainer) -> Path:
        if self.checkpoint:
            return Path(self.checkpoint)
        callback = trainer.checkpoint_callback
        folder = Path(callback.dirpath) if callback is not None and callback.dirpath else \
            Path(trainer.default_root_dir) / "checkpoints"
        return folder / "last.ckpt"
