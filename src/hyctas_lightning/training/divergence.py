"""Stop a diverging run before it does harm: a NaN or infinite loss ends training before the optimiser applies it,
and no checkpoint with non-finite weights is ever written."""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

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


class DivergenceGuard(L.Callback):
    """Raises ``TrainingDiverged`` at the first non-finite loss, naming the step and, for a supernet, the sub-network,
    before the optimiser step that would write NaN into the weights; and refuses to save a checkpoint whose weights
    are not all finite. ``hyctas fit`` always runs it (exit status 8).

    The losses are checked once per optimiser step (one device synchronisation), not at every backward pass; on
    several processes, a non-finite loss on any of them stops all of them at the same step."""

    def __init__(self) -> None:
        self._losses: List[Tuple[int, int, torch.Tensor]] = []  # (step, backward pass within the batch, loss)
        self._pass = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._pass = 0

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        self._losses.append((trainer.global_step, self._pass, loss.detach()))
        self._pass += 1

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        losses, self._losses = self._losses, []
        finite = not losses or bool(torch.stack([torch.isfinite(loss).all() for *_, loss in losses]).all())
        if not any_process(not finite):  # on several processes, all stop together (none waits in a collective)
            return
        if finite:
            raise TrainingDiverged(
                f"training diverged: another training process's loss is NaN or infinite at step "
                f"{trainer.global_step} (epoch {trainer.current_epoch}); stopped before the optimiser step (see that "
                f"process's message). Lower the learning rate (or clip gradients) and restart, or resume from the "
                f"last checkpoint with --ckpt_path")
        step, index, loss = next(entry for entry in losses if not bool(torch.isfinite(entry[2]).all()))
        raise TrainingDiverged(
            f"training diverged: the loss is {loss.float().mean().item()} at step {step} (epoch "
            f"{trainer.current_epoch}){describe_pass(pl_module, step, index)}; stopped before the optimiser step, "
            f"so no NaN reached the weights or a checkpoint. Lower the learning rate (or clip gradients) and "
            f"restart, or resume from the last checkpoint with --ckpt_path")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: Dict[str, Any]) -> None:
        bad = non_finite_entries(checkpoint.get("state_dict", {}))
        if bad:
            raise TrainingDiverged(
                f"training diverged: {len(bad)} weight tensor(s) hold NaN or infinite values at step "
                f"{trainer.global_step} (first: {bad[0]}); the checkpoint was not written. Lower the learning rate "
                f"(or clip gradients) and restart, or resume from the last checkpoint with --ckpt_path")
