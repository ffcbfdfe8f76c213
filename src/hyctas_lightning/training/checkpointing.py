"""Checkpoints that mean what they say and cost little: ``last.ckpt`` is the latest state of the run, written by a
thread while training goes on, never half-written, and a resumed run continues with the random streams an
uninterrupted run would have used."""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Dict, Optional

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import CheckpointIO, TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import AsyncCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

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


class AsyncAtomicCheckpointIO(AsyncCheckpointIO):
    """Checkpoints written by a thread, so training goes on while the file is written: Lightning's
    ``AsyncCheckpointIO`` copies every tensor of the checkpoint on the caller's thread (a device-to-device copy on a
    GPU: the stall is the copy, not the write; the copy holds as much device memory as the state until written)
    and hands the copy to one writer thread, around ``AtomicCheckpointIO`` (temporary file, flush, rename: never
    half a file). At most one write is in flight: a save waits for the previous one first, so the state is never
    held twice and the same file is never written twice at once; a removal waits too, so a write cannot bring back
    a file removed after it was asked for. The trainer's teardown waits for the last write, also after an error or
    SIGTERM, and raises a write's error. ``hyctas fit`` uses it for local paths.

    Args:
        checkpoint_io: the writer the thread runs (None: ``AtomicCheckpointIO``).
    """

    def __init__(self, checkpoint_io: Optional[CheckpointIO] = None) -> None:
        super().__init__(checkpoint_io or AtomicCheckpointIO())

    def save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self.wait()
        super().save_checkpoint(*args, **kwargs)

    def remove_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self.wait()
        super().remove_checkpoint(*args, **kwargs)

    def wait(self) -> None:
        """Return once every write asked for so far is on disk; raise the error of one that failed."""
        if self._executor is not None:
            self._executor.submit(lambda: None).result()  # one thread, in order: done after every earlier write
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: the latest state of a run, whatever any metric says. It is rewritten

    - at the end of every ``every_n_epochs``-th epoch (after the epoch's validation and learning-rate step), the
      default when no other schedule is given: cheap for small networks and short epochs (the demos);
    - every ``every_n_train_steps`` optimiser steps;
    - or by the clock, once ``every_seconds`` have passed since the last write: a large supernet's state (weights
      and SGD momentum) is written a few times an hour, not every short epoch. The time is checked at every step's
      end (every ``SYNC_STEPS`` steps on several processes, where process 0's clock decides for all) and at every
      epoch's end; when it runs out on an epoch's last step, the write waits for the end of the epoch;

    and in any case when training stops between those points (``max_steps``, early stopping, a ``Deadline``) and,
    on one process, on SIGTERM (Lightning stops at the end of the running step; the state written is that step's;
    on several processes the last scheduled write stays).

    Under ``hyctas fit`` the file is written atomically by a thread (``AsyncAtomicCheckpointIO``): training goes
    on while it is written and a kill leaves the previous ``last.ckpt`` intact. An end-of-epoch state resumes bit
    for bit; a mid-epoch one (by steps, by the clock or SIGTERM) repeats the rest of that epoch with a different
    data order. Keep the best-scoring state in a separate, monitored ``ModelCheckpoint`` (``filename: best``).

    Args:
        dirpath: folder of ``last.ckpt`` (None: ``checkpoints/`` of the logger's or the trainer's run folder).
        every_n_train_steps: rewrite it every this many optimiser steps.
        every_n_epochs: rewrite it every this many epochs (None: every epoch, unless another schedule is given).
        every_seconds: rewrite it once this many seconds of training have passed since the last write.
        weights_file: when training ends (its last step, ``max_steps`` or a ``Deadline``), also write the weights
            alone to this file name beside ``last.ckpt``: the model's state dict (BatchNorm statistics included),
            its hyper-parameters and ``hyctas`` metadata, without optimiser state, loops or callbacks; about half
            of ``last.ckpt`` with SGD momentum. Enough for ``hyctas search --ckpt`` and ``hyctas validate``, not
            for resuming. None: not written.
    """

    SYNC_STEPS = 20  # on several processes, the clock is checked (a broadcast from process 0) every this many steps
    clock = staticmethod(time.monotonic)

    def __init__(self, dirpath: Optional[str] = None, every_n_train_steps: Optional[int] = None,
                 every_n_epochs: Optional[int] = None, every_seconds: Optional[float] = None,
                 weights_file: Optional[str] = None) -> None:
        if every_seconds is not None and every_seconds < 0:
            raise ValueError(f"LastCheckpoint every_seconds: at least 0, got {every_seconds}")
        if weights_file is not None and (Path(weights_file).name != weights_file
                                         or weights_file == self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION):
            raise ValueError(f"LastCheckpoint weights_file: a file name beside last.ckpt (e.g. supernet.ckpt), "
                             f"got {weights_file!r}")
        if every_seconds is not None and every_n_epochs is None and every_n_train_steps is None:
            every_n_epochs = 0  # by the clock alone
        # an unmonitored top-1 named "last" is rewritten in place at every saving point; Lightning's save_last=True
        # with save_top_k=0 would write only when training ends
        super().__init__(dirpath=dirpath, filename=self.CHECKPOINT_NAME_LAST, monitor=None, save_top_k=1,
                         save_last=False, every_n_train_steps=every_n_train_steps, every_n_epochs=every_n_epochs,
                         save_on_train_epoch_end=True, enable_version_counter=False)
        self.every_seconds = every_seconds
        self.weights_file = weights_file

    def _write(self, trainer: L.Trainer) -> None:
        self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
        self._last_time_checked = self.clock()

    def _time_is_up(self, trainer: L.Trainer) -> bool:
        """Whether ``every_seconds`` have passed since the last write, by process 0's clock (the same answer on
        every process: the write is collective)."""
        if self.every_seconds is None or self._last_time_checked is None:
            return False
        return bool(trainer.strategy.broadcast(self.clock() - self._last_time_checked >= self.every_seconds))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_time_checked = self.clock()  # a resumed run waits its own interval before writing

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Write by steps, or by the clock unless this is the epoch's last step (then at the epoch's end)."""
        if self._should_skip_saving_checkpoint(trainer):
            return
        by_steps = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        last_step = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        check_clock = not last_step and (trainer.world_size == 1 or trainer.global_step % self.SYNC_STEPS == 0)
        if by_steps or (check_clock and self._time_is_up(trainer)):
            self._write(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer) and self._time_is_up(trainer):
            self._write(trainer)
        super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the final state if training stopped between saving points (``max_steps``, early stopping, a
        ``Deadline``), and the weights alone if ``weights_file`` is set."""
        super().on_train_end(trainer, pl_module)
        if trainer.global_step > self._last_global_step_saved and not trainer.sanity_checking:
            self._write(trainer)
        if self.weights_file and trainer.global_step > 0:
            trainer.save_checkpoint(self.last_path().with_name(self.weights_file), weights_only=True)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """On SIGTERM (Lightning stops at a step's end first), save the state of that step. One process only: the
        processes of a multi-GPU run may each see the signal after a different step, and a write is collective."""
        if (isinstance(exception, SIGTERMException) and trainer.world_size == 1
                and trainer.global_step > self._last_global_step_saved):
            self._write(trainer)

    def last_path(self) -> Path:
        """Where ``last.ckpt`` is written (known once the trainer has set this callback up)."""
        if self.dirpath is None:
            raise RuntimeError("LastCheckpoint.last_path: the folder is known once the trainer has set it up")
        return Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"


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
