"""Checkpoints that mean what they say: ``last.ckpt`` is the latest state of the run, and a resumed run continues
with the random streams an uninterrupted run would have used."""
from __future__ import annotations

import random
from typing import Any, Dict, Optional

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from hyctas_lightning.checkpoints import atomic_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in its own folder, flushes it to disk and renames it into place
    (``checkpoints.atomic_save``), so a kill or a crash leaves the previous file whole. Lightning's own writer stages
    the file in the system's temporary folder; where that is another file system, its final move is a copy that a
    kill can cut short. ``hyctas fit`` uses it for local paths."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
        else:
            atomic_save(checkpoint, path)


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: the latest state of a run, rewritten at the end of every training epoch (after the epoch's
    validation and learning-rate step) or every ``every_n_train_steps`` optimiser steps, and when training stops in
    between, whatever any metric says. Under ``hyctas fit`` it is written atomically (``AtomicCheckpointIO``), so a
    kill leaves the previous ``last.ckpt`` intact. Keep the best-scoring state in a separate, monitored
    ``ModelCheckpoint`` (``filename: best``).

    Args:
        dirpath: folder of ``last.ckpt`` (None: ``checkpoints/`` of the logger's or the trainer's run folder).
        every_n_train_steps: also rewrite it every this many optimiser steps (resuming from such a mid-epoch state
            repeats the rest of that epoch with a different data order).
        every_n_epochs: rewrite it every this many epochs (None: every epoch, unless ``every_n_train_steps``).
    """

    def __init__(self, dirpath: Optional[str] = None, every_n_train_steps: Optional[int] = None,
                 every_n_epochs: Optional[int] = None) -> None:
        # an unmonitored top-1 named "last" is rewritten in place at every saving point; Lightning's save_last=True
        # with save_top_k=0 would write only when training ends
        super().__init__(dirpath=dirpath, filename=self.CHECKPOINT_NAME_LAST, monitor=None, save_top_k=1,
                         save_last=False, every_n_train_steps=every_n_train_steps, every_n_epochs=every_n_epochs,
                         save_on_train_epoch_end=True, enable_version_counter=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the final state if training stopped between saving points (``max_steps``, early stopping)."""
        super().on_train_end(trainer, pl_module)
        if trainer.global_step > self._last_global_step_saved and not trainer.sanity_checking:
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))


def global_random_state() -> Dict[str, Any]:
    """The process-wide random streams (Python, NumPy, torch CPU and CUDA) as plain data and tensors, so a
    checkpoint holding them still loads with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                   cached),
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_global_random_state(state: Dict[str, Any]) -> None:
    """Restore what ``global_random_state`` returned (CUDA streams only onto as many GPUs as were saved)."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomStateCheckpoint(L.Callback):
    """Keeps the process-wide random streams in every checkpoint and restores them on resume, so the data order
    (the loader's shuffle and worker seeds draw from torch's stream) and any randomness of the model (drop path)
    continue as in an uninterrupted run. ``hyctas fit`` always runs it; the data module keeps its own augmentation
    stream (``SegmentationDataModule.state_dict``).

    Exact for checkpoints written at the end of an epoch with ``num_workers: 0`` or non-persistent workers; a
    persistent worker keeps its own random stream, and a mid-epoch checkpoint restarts the epoch's order."""

    def state_dict(self) -> Dict[str, Any]:
        return global_random_state()

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        set_global_random_state(state_dict)
