"""Where a training run's time goes: images and sub-network passes per second, the share of the wall clock spent
waiting for data, in forward and backward passes, optimiser steps, validation and checkpoint writes, and how busy
the GPU was. One callback, usable in any config::

    callbacks:
      - class_path: hyctas_lightning.training.TrainingEfficiency
        init_args: {warmup_steps: 10}

It logs ``efficiency/*`` at every epoch's end and writes ``efficiency.json`` (``TrainingEfficiency.summary``)
when the fit ends; ``benchmarks/gpu_efficiency.py`` runs ``hyctas fit`` with it for a fixed time.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.data import extract_batch_size

from hyctas_lightning.fileio import write_json

PHASES = ("data_wait", "forward_backward", "optimizer", "validation", "checkpoint", "other")
IDLE_PERCENT = 5  # a GPU utilisation sample at or below this counts as idle
STOP_CHECK_STEPS = 20  # on several processes, whether ``seconds`` ran out is agreed every this many steps


class GpuBusy:
    """Samples a GPU's utilisation in a thread: the percentage of the last sample period (1/6 s to 1 s, by model)
    in which a kernel ran, as NVML reports it (``nvidia-smi dmon``'s ``sm`` column; ``torch.cuda.utilization``).

    Args:
        read: returns one sample, in percent.
        interval: seconds between samples.
    """

    def __init__(self, read: Callable[[], float], interval: float = 1.0) -> None:
        self.read = read
        self.interval = interval
        self.samples: List[float] = []
        self.error: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def of(cls, device: torch.device, interval: float = 1.0) -> Tuple[Optional[GpuBusy], str]:
        """A sampler of ``device``'s GPU, or None and why there is none (no GPU, nvidia-ml-py missing)."""
        if device.type != "cuda":
            return None, f"not available on {device.type}"
        try:
            torch.cuda.utilization(device)
        except (ImportError, ModuleNotFoundError):
            return None, "not available: NVML needs nvidia-ml-py (pip install nvidia-ml-py)"
        except Exception as e:  # noqa: BLE001 - a driver without NVML: the run goes on without the figure
            return None, f"not available: NVML failed ({type(e).__name__}: {e})"
        return cls(lambda: float(torch.cuda.utilization(device)), interval), "NVML"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(self.read())
            except Exception as e:  # noqa: BLE001 - reported in the summary instead of killing the run
                self.error = f"{type(e).__name__}: {e}"
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpu-busy", daemon=True)
        self._thread.start()

    def stop(self) -> Dict[str, Any]:
        """Stop sampling; the mean utilisation and the share of idle samples, as fractions (None: no sample)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        n = len(self.samples)
        return {"gpu_busy": sum(self.samples) / (100 * n) if n else None,
                "gpu_idle_samples": sum(s <= IDLE_PERCENT for s in self.samples) / n if n else None,
                "gpu_samples": n, "gpu_note": self.error or f"NVML every {self.interval:g} s"}


def sub_networks(pl_module: L.LightningModule, step: int) -> int:
    """Sub-networks a module trains at ``step``: its sampler's draw (a supernet), else one network."""
    sampler = getattr(pl_module, "sampler", None)
    return len(sampler.sample(step)) if callable(getattr(sampler, "sample", None)) else 1


class TrainingEfficiency(L.Callback):
    """Times every training step in phases after ``warmup_steps`` steps: **forward/backward** (batch start to the
    optimiser step: the sub-networks' passes, the gradient all-reduce), **optimizer** (the step and what the
    training step does after it), **data wait** (from one step's end to the next one's start: waiting for the
    loader's batch and its copy to the device, plus the loop's logging), **validation**, **checkpoint** (the time
    ``trainer.save_checkpoint`` holds the loop: with ``AsyncAtomicCheckpointIO`` the copy of the state, not the
    write), and **other** (after the last step, until training ends). Validation and checkpoint time is taken out
    of whichever phase it fell in, so the phases add up to the wall clock. Counts images (every process's) and
    sub-network passes: images x the sub-networks of the step for a module with a ``sampler`` (the supernet:
    sandwich 4, single 1), else images. On a GPU it also samples utilisation through NVML (``GpuBusy``).

    On a GPU the host runs ahead of the device, so a phase's host time would be the time to queue its kernels: with
    ``synchronize`` the callback waits for the device at each step's start, optimiser step and end (three
    ``torch.cuda.synchronize`` per step), so each phase holds its own device work. That costs the overlap of
    queuing one phase while the device finishes the previous one: small for steps of tens of milliseconds and more,
    visible for launch-bound ones; ``synchronize: false`` leaves the loop untouched (the GPU's work then lands in
    the phase that waits for it).

    Args:
        warmup_steps: steps of this run left out before timing starts (loader start, cuDNN, the allocator).
        seconds: stop training after this many timed seconds (None: train as configured); on several processes
            checked every ``STOP_CHECK_STEPS`` steps.
        path: the summary's JSON file (None: ``efficiency.json`` in the trainer's ``default_root_dir``).
        synchronize: on a GPU, wait for the device at the phase boundaries (see above).
        gpu_sample_s: seconds between GPU utilisation samples.
    """

    def __init__(self, warmup_steps: int = 5, seconds: Optional[float] = None, path: Optional[str] = None,
                 synchronize: bool = True, gpu_sample_s: float = 1.0) -> None:
        if warmup_steps < 0 or (seconds is not None and seconds <= 0) or gpu_sample_s <= 0:
            raise ValueError(f"TrainingEfficiency: warmup_steps >= 0, seconds > 0 and gpu_sample_s > 0, got "
                             f"{warmup_steps}, {seconds}, {gpu_sample_s}")
        self.warmup_steps, self.seconds, self.path = warmup_steps, seconds, path
        self.synchronize, self.gpu_sample_s = synchronize, gpu_sample_s
        self._reset()

    def _reset(self) -> None:
        self.phases = dict.fromkeys(PHASES, 0.0)
        self.checkpoint_writes = 0
        self._steps: List[Tuple[int, int]] = []  # (global step, images) of every timed step
        self._passes_counted, self._passes = 0, 0
        self._batches = 0  # steps begun in this run, the warm-up included
        self._start = self._end = None  # the timed window: perf_counter seconds, or None
        self._mark = 0.0  # the last phase boundary
        self._carved = 0.0  # validation and checkpoint time since the last boundary
        self._optimizer_seen = False
        self._step = 0
        self._val_start: Optional[float] = None
        self._gpu: Optional[GpuBusy] = None
        self._gpu_result: Dict[str, Any] = {}
        self._device = torch.device("cpu")
        self._save: Optional[Callable[..., None]] = None
        self.result: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ clock
    def _now(self) -> float:
        if self.synchronize and self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        return time.perf_counter()

    @property
    def timing(self) -> bool:
        """Whether the timed window is open (after the warm-up, before training ends)."""
        return self._start is not None and self._end is None

    def _close(self, phase: str, now: float) -> None:
        """Charge the time since the last boundary to ``phase``, less the validation and checkpoints inside it."""
        self.phases[phase] += max(0.0, now - self._mark - self._carved)
        self._mark, self._carved = now, 0.0

    def _carve(self, phase: str, seconds: float) -> None:
        if self.timing:
            self.phases[phase] += seconds
            self._carved += seconds

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Time ``trainer.save_checkpoint`` (every checkpoint callback and ``Deadline`` go through it)."""
        if stage != "fit" or self._save is not None:
            return
        self._reset()
        self._save = trainer.save_checkpoint

        def timed_save(*args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            try:
                self._save(*args, **kwargs)
            finally:
                if self.timing:
                    self.checkpoint_writes += 1
                self._carve("checkpoint", time.perf_counter() - start)

        trainer.save_checkpoint = timed_save

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._save is not None:
            del trainer.save_checkpoint  # the instance attribute set up above: the class's method again
            self._save = None
        if self._gpu is not None:
            self._gpu.stop()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._device = pl_module.device

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._batches += 1
        self._optimizer_seen = False
        self._step = trainer.global_step  # the step the module's sampler draws this batch's sub-networks for
        if self._start is None and self._batches > self.warmup_steps:
            self._start = self._mark = self._now()
            self._gpu, note = GpuBusy.of(self._device, self.gpu_sample_s)
            if self._gpu is None:
                self._gpu_result = {"gpu_busy": None, "gpu_idle_samples": None, "gpu_samples": 0, "gpu_note": note}
            else:
                self._gpu.start()
        elif self.timing:
            self._close("data_wait", self._now())

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.timing and not self._optimizer_seen:
            self._close("forward_backward", self._now())
        self._optimizer_seen = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.timing:
            return
        now = self._now()
        self._close("optimizer" if self._optimizer_seen else "forward_backward", now)
        self._steps.append((self._step, extract_batch_size(batch)))
        if self.seconds is not None and (trainer.world_size == 1 or len(self._steps) % STOP_CHECK_STEPS == 0):
            # several processes stop at the same step: process 0's clock decides for all
            if trainer.strategy.broadcast(now - self._start >= self.seconds):
                trainer.should_stop = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_start = self._now()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_start is not None:
            self._carve("validation", self._now() - self._val_start)
            self._val_start = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.timing and self._steps:
            result = self.summary(trainer, pl_module, time.perf_counter())
            pl_module.log_dict({f"efficiency/{k}": float(v) for k, v in result.items()
                                if k in ("images_per_s", "passes_per_s", "gpu_busy", "checkpoint_stall")
                                and v is not None}, rank_zero_only=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._finish(trainer, pl_module)
        self._write(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Training ended and the trainer's teardown waited for the last checkpoint write: write the summary."""
        if self.result is not None and self._end is not None:
            self.result["after_training_s"] = round(time.perf_counter() - self._end, 3)
        self._write(trainer)

    # ------------------------------------------------------------------ results
    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.timing:
            return
        self._end = self._now()
        self._close("other", self._end)
        self._gpu_result, self._gpu = self._gpu.stop() if self._gpu is not None else self._gpu_result, None
        self.result = self.summary(trainer, pl_module, self._end)

    def summary(self, trainer: L.Trainer, pl_module: L.LightningModule, now: float) -> Dict[str, Any]:
        """The timed window so far: rates of all processes together, seconds and shares of each phase, GPU busy."""
        for step, images in self._steps[self._passes_counted:]:
            self._passes += images * sub_networks(pl_module, step)
        self._passes_counted = len(self._steps)
        wall = max(now - (self._start or now), 1e-9)
        processes = trainer.world_size
        images = sum(n for _, n in self._steps)
        return {"steps": len(self._steps), "warmup_steps": self.warmup_steps, "processes": processes,
                "device": str(self._device), "synchronized": self.synchronize and self._device.type == "cuda",
                "wall_s": round(wall, 3), "images_per_s": processes * images / wall,
                "passes_per_s": processes * self._passes / wall, "images": processes * images,
                "passes": processes * self._passes, "checkpoint_writes": self.checkpoint_writes,
                "checkpoint_stall": self.phases["checkpoint"] / wall,
                "phases_s": {k: round(v, 4) for k, v in self.phases.items()},
                "phases": {k: v / wall for k, v in self.phases.items()}, **self._gpu_result}

    def _write(self, trainer: L.Trainer) -> None:
        if self.result is None or not trainer.is_global_zero:
            return
        path = write_json(Path(self.path) if self.path else Path(trainer.default_root_dir) / "efficiency.json",
                          self.result)
        shares = ", ".join(f"{k} {100 * v:.1f}%" for k, v in self.result["phases"].items())
        rank_zero_info(f"efficiency: {self.result['images_per_s']:.1f} images/s, {self.result['passes_per_s']:.1f} "
                       f"sub-network passes/s over {self.result['steps']} steps; {shares} ({path})")
