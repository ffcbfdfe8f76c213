"""Optimiser details a weight-sharing supernet needs."""
from __future__ import annotations

import torch


@torch.no_grad()
def prime_momentum(optimizer: torch.optim.Optimizer) -> int:
    """Give every parameter of a fused SGD its momentum buffer now; returns how many were created.

    SGD creates a buffer at a parameter's first gradient, and a supernet's parameters receive their first gradients
    at different steps: the fused kernel then meets a step where some parameters have buffers and others not, and
    fails. With ``dampening=0`` a zero buffer gives exactly the lazily created one (``0.9 * 0 + grad == grad``), so
    training is unchanged. Other optimisers, unfused SGD and buffers restored from a checkpoint are left alone.

    Args:
        optimizer: the optimiser of the run.
    """
    created = 0
    if not isinstance(optimizer, torch.optim.SGD):
        return created
    for group in optimizer.param_groups:
        if not group.get("fused") or not group["momentum"] or group["dampening"]:
            continue
        for p in group["params"]:
            state = optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                created += 1
    return created
