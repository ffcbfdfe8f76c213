"""The operator registry: ``@register_op("name")`` makes an op searchable and selectable from YAML."""
from __future__ import annotations

from typing import Callable, Type

from torch import nn

from hyctas_lightning.registry import Registry

OPS: Registry[Type[nn.Module]] = Registry("operator")


def register_op(name: str, *, overwrite: bool = False) -> Callable[[Type[nn.Module]], Type[nn.Module]]:
    """Register an op class built as ``cls(c_in, c_out, stride)`` with ``forward(x, out_channels)``.

    The op must be slimmable: run at ``out_channels <= c_out`` and any input width ``<= c_in`` by slicing
    the leading channels of its weights (compose it from :mod:`hyctas_lightning.layers`), so that a child
    network inherits its weights with :func:`hyctas_lightning.layers.copy_prefix_`. ``stride`` is 1 or 2.
    An optional class attribute ``activation_factor`` (feature maps kept per output map) feeds the
    training-memory estimate of constraint 4. A residual op may wrap its non-identity path in
    ``timm.layers.DropPath()``: retraining raises every such module's ``drop_prob`` on a schedule.

    Args:
        name: the name search spaces and architectures list the op by.
        overwrite: replace an existing op of that name instead of raising.
    """

    def decorator(cls: Type[nn.Module]) -> Type[nn.Module]:
        cls.op_name = name
        return OPS.register(name, overwrite=overwrite)(cls)

    return decorator


def build_op(name: str, c_in: int, c_out: int, stride: int = 1) -> nn.Module:
    """The op registered as ``name``, built at full width.

    Args:
        name: a name in ``OPS`` (``conv``, ``conv_2x``, ``light_conv``, ``light_conv_2x``, ``mesa`` or a plugin's).
        c_in: input channels.
        c_out: output channels.
        stride: 1, or 2 to halve the resolution.
    """
    return OPS.get(name)(c_in, c_out, stride)
