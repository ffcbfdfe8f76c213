"""Stop a diverging run before it does harm: a NaN or infinite loss ends training before the optimiser applies it,
and no checkpoint with non-finite weights is ever written."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import lightning as L
import torch

from hyctas_lightning.distributed import any_process
from hyctas_lightning.errors import TrainingDiverged


def describe_pass(pl_module: L.LightningModule, step: int, index: int) -> str:
    """Which sub-network the ``index``-th backward pass of ``step`` trained, for modules that draw them from a
    ``sampler`` (the supernet: ``sampler.sample(step)`` yields ``(name, architecture)`` pairs); else ''."""
    sampler = getattr(pl_module, "sampler", None)
    if sampler is None or not callable(getattr(sampler, "sample", None)):
        return ""
    draws = list(sampler.sample(step))
    if index >= len(draws):
        return f", backward pass {index + 1} of the step"
    name, arch = draws[index]
    return f", sub-network '{name}' ({arch.num_branches} branch(es), architecture {arch.hash})"


def non_finite_entries(state: Dict[str, Any]) -> List[str]:
    """Names of the floating-point tensors in ``state`` holding a NaN or an infinity; one device synchronisation
    per device, not one per tensor (a supernet's state has thousands: the check runs before every checkpoint)."""
    keys: Dict[torch.device, List[str]] = {}
    for k, v in state.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            keys.setdefault(v.device, []).append(k)
    bad = set()
    for names in keys.values():
        finite = torch.stack([torch.isfinite(state[k]).all() for k in names]).tolist()
        bad.update(k for k, ok in zip(names, finite) if not ok)
    return [k for k in state if k in bad]


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` can skip itself on the device: a fused PyTorch optimiser reads ``found_inf`` (as
    it does for ``GradScaler``) and leaves weights and state untouched where it is non-zero."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False)
                and all(group.get("fused") for group in optimizer.param_groups))


def _scales(trainer: L.Trainer) -> bool:
    """Whether a ``GradScaler`` drives the optimiser step (fp16 mixed precision): it sets ``found_inf`` itself."""
    return getattr(trainer.precision_plugin, "scaler", None) is not None


class _Verdict:
    """Whether a step's losses were finite, copied to the host without waiting: ``ok`` waits only for the work
    queued before the copy (the step's own passes), not for what the host queued since."""

    def __init__(self, losses: List[Tuple[int, int, torch.Tensor]], epoch: int, finite: torch.Tensor) -> None:
        self.losses, self.epoch = losses, epoch
        cuda = finite.is_cuda
        self.finite = finite.to("cpu", non_blocking=cuda)
        self.event = torch.cuda.Event() if cuda else None
        if self.event is not None:
            self.event.record()

    def ok(self) -> bool:
        if self.event is not None:
            self.event.synchronize()
        return bool(self.finite)


class DivergenceGuard(L.Callback):
    """Raises ``TrainingDiverged`` at the first non-finite loss, naming the step and, for a supernet, the sub-network,
    before the optimiser step that would write NaN into the weights; and refuses to save a checkpoint whose weights
    are not all finite. ``hyctas fit`` always runs it (exit status 8).

    The losses are checked once per optimiser step, not at every backward pass. On one process with a fused
    optimiser (``fused: true``, e.g. the CamVid supernet's SGD) the check costs no synchronisation: the verdict goes
    to the optimiser as ``found_inf``, so the step skips itself on the device if a loss is not finite, and the host
    reads it one step later (raising then, at the next step, a checkpoint or the end of training), so the host keeps
    queueing work ahead of the GPU. Otherwise the step waits for its verdict (one device synchronisation); on several
    processes a non-finite loss on any of them stops all of them at the same step."""

    def __init__(self) -> None:
        self._losses: List[Tuple[int, int, torch.Tensor]] = []  # (step, backward pass within the batch, loss)
        self._pass = 0
        self._pending: Optional[_Verdict] = None  # a step whose update was left to the device to skip

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._pass = 0

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._losses.append((trainer.global_step, self._pass, loss.detach()))
        self._pass += 1

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        self._settle(trainer, pl_module)
        losses, self._losses = self._losses, []
        finite = torch.stack([torch.isfinite(loss).all() for *_, loss in losses]).all() if losses else None
        scaled = _scales(trainer)
        if finite is not None and trainer.world_size == 1 and skips_on_device(optimizer) and not scaled:
            optimizer.found_inf = (~finite).float()
            self._pending = _Verdict(losses, trainer.current_epoch, finite)
            return
        if not scaled and getattr(optimizer, "found_inf", None) is not None:
            optimizer.found_inf = None  # a verdict of an earlier step must not skip this one
        if not any_process(finite is not None and not bool(finite)):  # on several processes, all stop together
            return
        if finite is None or bool(finite):
            raise TrainingDiverged(
                f"training diverged: another training process's loss is NaN or infinite at step "
                f"{trainer.global_step} (epoch {trainer.current_epoch}); stopped before the optimiser step (see that "
                f"process's message). Lower the learning rate (or clip gradients) and restart, or resume from the "
                f"last checkpoint with --ckpt_path")
        self._diverged(pl_module, losses, trainer.current_epoch, "stopped before the optimiser step")

    def _settle(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Read the verdict left to the device, and raise if that step's losses were not finite."""
        pending, self._pending = self._pending, None
        if pending is not None and not pending.ok():
            self._diverged(pl_module, pending.losses, pending.epoch, "the optimiser skipped that step on the device")

    @staticmethod
    def _diverged(pl_module: L.LightningModule, losses: List[Tuple[int, int, torch.Tensor]], epoch: int,
                  how: str) -> None:
        step, index, loss = next(entry for entry in losses if not bool(torch.isfinite(entry[2]).all()))
        raise TrainingDiverged(
            f"training diverged: the loss is {loss.float().mean().item()} at step {step} (epoch "
            f"{epoch}){describe_pass(pl_module, step, index)}; {how}, so no NaN reached the weights "
            f"or a checkpoint. Lower the learning rate (or clip gradients) and restart, or resume from the last "
            f"checkpoint with --ckpt_path")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._settle(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: Dict[str, Any]) -> None:
        self._settle(trainer, pl_module)
        bad = non_finite_entries(checkpoint.get("state_dict", {}))
        if bad:
            raise TrainingDiverged(
                f"training diverged: {len(bad)} weight tensor(s) hold NaN or infinite values at step "
                f"{trainer.global_step} (first: {bad[0]}); the checkpoint was not written. Lower the learning rate "
                f"(or clip gradients) and restart, or resume from the last checkpoint with --ckpt_path")
