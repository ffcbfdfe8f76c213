"""The few ``torch.distributed`` facts and collectives the package needs when it runs as several processes (one per
GPU, launched by Lightning, Fabric or ``torchrun``): which process this is, a CPU (gloo) group for small control
messages beside the GPUs' NCCL group, and an agreement check.

Control messages travel over gloo on the CPU, so checking or exchanging a few numbers never waits for the GPU's
queue of work; a world of one process skips every collective."""
from __future__ import annotations

import hashlib
from typing import Optional

import torch
import torch.distributed as dist

_CPU_GROUP: list = []  # [(default group, its gloo twin)]: one twin per default group


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised default process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def cpu_group() -> Optional[dist.ProcessGroup]:
    """A gloo group over every process of the default group, created once (a collective call: every process must
    reach its first use together). The default group itself when it is already gloo; None when not distributed."""
    if not is_distributed():
        return None
    if dist.get_backend() == "gloo":
        return dist.group.WORLD
    if not _CPU_GROUP or _CPU_GROUP[0][0] is not dist.group.WORLD:
        _CPU_GROUP[:] = [(dist.group.WORLD, dist.new_group(backend="gloo"))]
    return _CPU_GROUP[0][1]


def fingerprint(text: str) -> int:
    """A 62-bit integer identity of ``text`` (fits an int64 tensor with its negation)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16) >> 2


def all_agree(text: str) -> bool:
    """True on every process when all processes passed the same ``text``, False on every process otherwise: one
    small all-reduce over the CPU group (max of the fingerprint and of its negation), so every process reaches the
    same verdict and can stop together instead of leaving the others waiting in their next collective."""
    group = cpu_group()
    if group is None:
        return True
    value = fingerprint(text)
    both = torch.tensor([value, -value], dtype=torch.int64)
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
    return int(both[0]) == -int(both[1])


def any_process(flag: bool) -> bool:
    """True on every process when ``flag`` is true on at least one (an all-reduce over the CPU group)."""
    group = cpu_group()
    if group is None:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int64)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=group)
    return bool(value.item())
