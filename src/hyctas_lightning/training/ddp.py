"""Data-parallel training of a module that back-propagates several losses per optimiser step (the supernet's
sub-networks), under Lightning's ``ddp`` strategies as typed (``--trainer.devices N --trainer.strategy ddp`` or
``auto``).

Lightning's DDP, with manual optimisation, arms DDP's gradient reducer at every ``manual_backward``: each sub-network
of the sandwich would all-reduce on its own, and since every sub-network leaves parameters unused, the reducer
stops with "parameters that were not used in producing the loss" unless it searches the autograd graph for them
after every backward (``find_unused_parameters``). Here the reducer stays unarmed (``no_sync`` for the whole
step), every backward pass accumulates locally, and ``one_gradient_sync`` averages the accumulated gradients in
one all-reduce before the optimiser step: no graph search, one collective per step whatever the number of
sub-networks. Parameters no sub-network of the step used keep no gradient on every process (all processes train the
same sub-networks, which ``require_same_architectures`` checks), so the optimiser skips them exactly as on one
device.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import lightning as L
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hyctas_lightning.distributed import all_agree
from hyctas_lightning.search_space import Architecture


def ddp_model(module: L.LightningModule) -> Optional[DistributedDataParallel]:
    """The DDP wrapper around ``module`` when it trains on several processes, else None. Strategies that shard or
    wrap otherwise (FSDP, DeepSpeed) are refused: their gradients are not whole tensors to average."""
    trainer = module._trainer
    if trainer is None or trainer.world_size == 1:
        return None
    model = trainer.strategy.model
    if not isinstance(model, DistributedDataParallel):
        raise ValueError(f"{type(module).__name__} trains several sub-networks per step and averages their gradients "
                         f"itself, which needs a DDP strategy (--trainer.strategy ddp or auto), not "
                         f"{type(trainer.strategy).__name__}")
    return model


@contextmanager
def one_gradient_sync(module: L.LightningModule) -> Iterator[None]:
    """Run the backward passes of one optimiser step inside: they accumulate locally, and on leaving, the gradients
    are averaged over the processes in one all-reduce. Outside DDP it does nothing.

    The reducer stays unarmed for good (it would otherwise be armed again when the DDP forward that wraps the
    training step returns, and fire in the middle of the next step's first backward)."""
    model = ddp_model(module)
    if model is not None:
        model.require_backward_grad_sync = False
    yield
    if model is not None:
        all_reduce_gradients(module.parameters(), model.process_group)


@torch.no_grad()
def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter], group: Optional[dist.ProcessGroup] = None) -> int:
    """Average the gradients that exist over the processes of ``group``: one flat buffer per device and dtype, one
    all-reduce each. Every process must hold gradients for the same parameters (the same sub-networks trained).
    Returns the number of gradient elements averaged."""
    grads = [p.grad for p in parameters if p.grad is not None]
    buckets: Dict[Tuple[torch.device, torch.dtype], List[torch.Tensor]] = {}
    for grad in grads:
        buckets.setdefault((grad.device, grad.dtype), []).append(grad)
    processes = dist.get_world_size(group)
    for bucket in buckets.values():
        flat = torch._utils._flatten_dense_tensors(bucket)
        dist.all_reduce(flat, group=group)
        flat.div_(processes)
        torch._foreach_copy_(bucket, torch._utils._unflatten_dense_tensors(flat, bucket))
    return sum(g.numel() for g in grads)


def require_same_architectures(step: int, draws: Sequence[Tuple[str, Architecture]]) -> None:
    """Stop every process together if they were about to train different sub-networks at ``step`` (their gradients
    would be averaged over different graphs). One small all-reduce on the CPU; nothing outside DDP."""
    described = f"step {step}: " + ", ".join(f"{name} {arch.hash}" for name, arch in draws)
    if not all_agree(described):
        raise RuntimeError(f"the training processes drew different sub-networks at step {step} (this process: "
                           f"{described}); every process must draw from the same sampler seed and step")


def log_global(module: L.LightningModule, values: Dict[str, torch.Tensor], **kwargs) -> None:
    """Log values that are already the same on every process (e.g. a torchmetrics ``compute()``, which syncs its
    state): with ``sync_dist`` under ``max``, the all-reduce leaves them bit for bit as they are and Lightning does
    not warn that epoch-level values are unsynced."""
    module.log_dict(values, sync_dist=True, reduce_fx="max", **kwargs)
