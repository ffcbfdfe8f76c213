"""Errors a user can act on, beyond those of one layer (``ArchitectureError``, ``DatasetError``,
``CheckpointError``): each names what went wrong and what to do, and ``hyctas`` turns each kind into one line and
its own exit status (``hyctas_lightning.cli.errors``)."""
from __future__ import annotations

import torch

# `hyctas search`'s exit status when no architecture met the limits: the pipeline tells it from a failure by it
EXIT_NOTHING_FEASIBLE = 3


class ConfigError(ValueError):
    """An option or config value that cannot be used: a wrong type, a class path that does not import, or an
    option that a ``--ckpt_path`` checkpoint would override; the message names the key and the fix."""


class ClassCountError(ValueError):
    """A model or checkpoint and the data disagree on the number of classes."""


class TrainingDiverged(RuntimeError):
    """A loss or a weight became NaN or infinite; training stopped before saving it."""


class DeviceUnavailable(RuntimeError):
    """A GPU was asked for on a machine without one."""


def check_device(device: str | torch.device | None) -> None:
    """Refuse a CUDA device that this machine does not have, before any work starts.

    Args:
        device: ``cuda``, ``cuda:N``, ``cpu``, ``auto`` or None (None and ``auto`` always pass).
    """
    if device is None or str(device) == "auto" or not str(device).startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"device '{device}' asked for, but this machine has no usable CUDA GPU; "
                                f"use --device cpu (or leave the device to its default)")
    index = torch.device(device).index
    if index is not None and index >= torch.cuda.device_count():
        raise DeviceUnavailable(f"device '{device}' asked for, but this machine has {torch.cuda.device_count()} "
                                f"GPU(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}")
