"""Inference shortcuts of the eager network: weights derived once for evaluation (BatchNorm folded into its conv,
projections concatenated into one conv) and reused pass after pass.

At batch 1 a GPU runs these networks faster than the host can launch their kernels, so every separate op costs
host time. In eval mode without autograd a layer may run from derived weights instead of its parameters; a
:class:`DerivedWeights` cache rebuilds them as soon as any tensor they come from changes, so a weight update, a
``load_state_dict``, recalibrated BatchNorm statistics or a move to another device or dtype are never missed.
Training, autograd and traced or compiled programs (``torch.compile``, ``torch.export``, ONNX, TorchScript) always
see the plain layers.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

Stamp = Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]


def inference_shortcuts(module: nn.Module) -> bool:
    """Whether ``module`` may run from derived weights now: eval mode, autograd off, and not being traced or
    compiled (a traced program keeps the plain layers and leaves fusing to its compiler or runtime).

    Args:
        module: the layer about to run.
    """
    return not (module.training or torch.is_grad_enabled() or torch.compiler.is_compiling()
                or torch.jit.is_tracing())


_version = operator.attrgetter("_version")


def _stamp(sources: Sequence[torch.Tensor]) -> Optional[Stamp]:
    """What identifies the current content of each tensor: the object, its storage address (assigning ``.data``
    swaps the storage of the same parameter) and its version counter (every in-place write bumps it); None for
    tensors that keep no version counter (made under ``torch.inference_mode``), which are never cached. Mapped in C:
    this runs for every layer on every pass."""
    try:
        return tuple(map(id, sources)), tuple(map(torch.Tensor.data_ptr, sources)), tuple(map(_version, sources))
    except RuntimeError:
        return None


class DerivedWeights:
    """A cache of tensors computed from a module's parameters and buffers, valid while none of them changed.

    The cache holds the sources and their storages, so no other tensor can take an identity or a storage address
    of its stamp while it is kept. Copies and pickles of the owning module start empty.
    """

    __slots__ = ("_sources", "_stamp", "_value")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget the derived tensors (they are rebuilt on the next use)."""
        self._sources: Tuple[Any, ...] = ()
        self._stamp: Optional[Stamp] = None
        self._value: Any = None

    def get(self, sources: Sequence[torch.Tensor], build: Callable[[], Any]) -> Any:
        """The derived tensors of ``sources``: the cached ones if no source changed since they were built, else
        ``build()`` (run without autograd), cached.

        Args:
            sources: every tensor the result depends on.
            build: computes the result from the current sources.
        """
        stamp = _stamp(sources)
        if stamp is None or stamp != self._stamp:
            with torch.no_grad():
                value = build()
            if stamp is None:
                return value
            self._sources, self._stamp, self._value = (tuple(sources), tuple(t.detach() for t in sources)), stamp, value
        return self._value

    def tensors(self) -> List[torch.Tensor]:
        """The derived tensors cached now (empty when nothing is cached)."""
        value = self._value if isinstance(self._value, (tuple, list)) else (self._value,)
        return [t for t in value if isinstance(t, torch.Tensor)]

    def __deepcopy__(self, memo: dict) -> DerivedWeights:
        return DerivedWeights()

    def __reduce__(self) -> Tuple[type, tuple]:
        return DerivedWeights, ()


def derived_tensors(model: nn.Module) -> List[torch.Tensor]:
    """Every derived tensor cached in ``model``'s layers now. A CUDA graph captured from the model reads them by
    address, so whoever keeps the graph keeps these alive: switching the mode or moving the model drops the caches,
    and the graph would then replay on freed memory.

    Args:
        model: the network, after the passes that built its caches.
    """
    return [t for m in model.modules() for v in vars(m).values() if isinstance(v, DerivedWeights) for t in v.tensors()]


class DerivedWeightsOwner(nn.Module):
    """Base of the layers that keep :class:`DerivedWeights`: moving or casting the layer (``.to()``, ``.cuda()``,
    ``.half()``) or switching its mode drops them at once, so no copy on the old device outlives the move."""

    def _drop_derived(self) -> None:
        for value in vars(self).values():
            if isinstance(value, DerivedWeights):
                value.clear()

    def _apply(self, fn: Callable, recurse: bool = True) -> nn.Module:
        self._drop_derived()
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> nn.Module:
        self._drop_derived()
        return super().train(mode)
