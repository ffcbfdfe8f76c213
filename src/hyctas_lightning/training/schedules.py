"""Per-step schedules of retraining: the poly learning rate with linear warm-up, and scheduled drop path."""
from __future__ import annotations

from dataclasses import dataclass

from lightning.pytorch.utilities import rank_zero_warn
from timm.layers import DropPath
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


@dataclass(frozen=True)
class PolyWarmup:
    """Learning-rate factor at step ``t``: ``(1 - t / max_iters) ** power``, times a linear ramp from
    ``warmup_factor`` to 1 over the first ``warmup_iters`` steps (detectron2's ``WarmupPolyLR``; the release's
    own scheduler instead warms up geometrically from 5e-6 and starts the poly decay after the warm-up). A plain
    object rather than a lambda, so the scheduler's state pickles.

    Args:
        max_iters: total optimiser steps of the run; the factor reaches 0 here.
        warmup_iters: steps of linear warm-up (0 disables it; must be below ``max_iters``). Longer warm-ups
            steady training at high learning rates or large batches.
        power: exponent of the poly decay (0.9, the usual segmentation value; 1 is linear).
        warmup_factor: factor at step 0, the start of the warm-up ramp.
    """

    max_iters: int
    warmup_iters: int = 0
    power: float = 0.9
    warmup_factor: float = 1e-3

    def __post_init__(self) -> None:
        if self.max_iters < 1:
            raise ValueError(f"max_iters must be at least 1, got {self.max_iters}")
        if not 0 <= self.warmup_iters < self.max_iters:
            raise ValueError(f"warmup_iters must be in [0, max_iters={self.max_iters}), got {self.warmup_iters}")

    def __call__(self, step: int) -> float:
        poly = max(0.0, 1.0 - step / self.max_iters) ** self.power
        if step >= self.warmup_iters:
            return poly
        alpha = step / self.warmup_iters
        return poly * (self.warmup_factor * (1.0 - alpha) + alpha)


class PolyWarmupLR(LambdaLR):
    """Poly decay with linear warm-up; step it every optimiser step (``interval: step``).

    Usable from YAML as ``lr_scheduler: {class_path: hyctas_lightning.training.PolyWarmupLR, init_args: ...}``.

    Args:
        optimizer: the optimiser whose learning rates are scaled (each group's initial ``lr`` is the peak).
        max_iters: total optimiser steps of the run (e.g. epochs x batches per epoch); the rate reaches 0 here.
        warmup_iters: steps of linear warm-up before the decay takes over (0 disables it).
        power: exponent of the poly decay.
        warmup_factor: learning-rate factor at the first warm-up step.
        last_epoch: index of the last step taken, -1 for a fresh start (PyTorch's resume convention).
    """

    def __init__(self, optimizer: Optimizer, max_iters: int, warmup_iters: int = 0, power: float = 0.9,
                 warmup_factor: float = 1e-3, last_epoch: int = -1) -> None:
        super().__init__(optimizer, PolyWarmup(max_iters, warmup_iters, power, warmup_factor), last_epoch)

    @classmethod
    def for_run(cls, optimizer: Optimizer, total_steps: float, warmup_iters: int, power: float = 0.9,
                warmup_factor: float = 1e-3) -> PolyWarmupLR:
        """The schedule over a run of ``total_steps`` (Lightning's ``estimated_stepping_batches``): a run without
        an end is refused, and a warm-up as long as the run is shortened to end one step before it."""
        if total_steps == float("inf"):
            raise ValueError("the poly schedule needs a finite run: set trainer.max_steps or trainer.max_epochs")
        total = max(1, int(total_steps))
        if warmup_iters >= total:
            rank_zero_warn(f"warmup_iters={warmup_iters} is not below the run's {total} steps; warming up over "
                           f"{total - 1} instead (lower model.init_args.warmup_iters)")
            warmup_iters = total - 1
        return cls(optimizer, total, warmup_iters, power, warmup_factor)


def drop_path_modules(model: nn.Module) -> list[DropPath]:
    """Every drop-path site of a network (residual paths of light_conv and mesa cells, or a plugin's).

    Args:
        model: the network to search.
    """
    return [m for m in model.modules() if isinstance(m, DropPath)]


def scheduled_drop_path(final_rate: float, step: int, total_steps: int) -> float:
    """Scheduled drop path (Auto-DeepLab, paper table 8): the probability rises linearly from 0 to
    ``final_rate`` over training, so early training sees the whole network.

    Args:
        final_rate: drop-path probability reached at the end of training.
        step: current optimiser step.
        total_steps: steps of the whole run.
    """
    return final_rate * min(1.0, step / max(1, total_steps))
