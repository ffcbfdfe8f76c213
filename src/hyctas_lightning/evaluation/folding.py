"""BatchNorm folding: an inference network computes the same function with each BN merged into the conv
before it, saving one memory pass per layer (and the BN kernels) at deployment."""
from __future__ import annotations

from typing import Iterator, Tuple

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from hyctas_lightning.layers import ConvBNAct


def _conv_bn_pairs(model: nn.Module) -> Iterator[Tuple[nn.Module, str, str]]:
    """(parent, conv attribute, bn attribute) for every conv directly followed by a BN: the ``conv``/``bn`` of
    a ConvBNAct, and adjacent children of an ``nn.Sequential`` (torchvision's Conv2dNormActivation, heads)."""
    for module in model.modules():
        if isinstance(module, ConvBNAct):
            yield module, "conv", "bn"
        elif isinstance(module, nn.Sequential):
            names = list(module._modules)
            yield from ((module, a, b) for a, b in zip(names, names[1:]))


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm that follows a conv into that conv (whose weight and bias are replaced), in place;
    returns how many were folded.

    The model must be in eval mode: folding bakes in the running statistics.
    """
    if model.training:
        raise ValueError("fold_batchnorm: call model.eval() first; folding uses the BN running statistics")
    folded = 0
    for parent, conv_name, bn_name in list(_conv_bn_pairs(model)):
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            # the conv's own weights are replaced (``fuse_conv_bn_eval`` would fold into a deep copy of it first)
            conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                                          bn.eps, bn.weight, bn.bias)
            setattr(parent, bn_name, nn.Identity())
            folded += 1
    return folded


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
