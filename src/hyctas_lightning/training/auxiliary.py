"""Auxiliary heads: FCN heads on intermediate features of the trained network (the release puts them on the
branches' stride-16/32 outputs), trained beside its main output and left out of deployment."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Sequence

import torch
from torch import nn
from torchvision.models.segmentation.fcn import FCNHead

from hyctas_lightning.models.blocks import resize

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def aux_features(net: nn.Module) -> Dict[str, int]:
    """Where auxiliary heads attach ({submodule name: channels}), as the network declares it: for a ChildNet the
    modules producing the branches' last features at stride 16 and 32 (release), for a baseline its own choice."""
    return dict(getattr(net, "aux_features", {}))


@contextmanager
def capture_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[Dict[str, torch.Tensor]]:
    """Record the outputs of submodules ``names`` during the forward passes run inside the block. The hooks exist
    only for the block, so the network itself stays hook-free for export and benchmarking."""
    outputs: Dict[str, torch.Tensor] = {}

    def recorder(name: str):
        return lambda module, inputs, output: outputs.__setitem__(name, output)

    handles = [model.get_submodule(name).register_forward_hook(recorder(name)) for name in names]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


class AuxiliaryHeads(nn.ModuleDict):
    """One FCN head per declared feature of a network, keyed by the submodule's name with ``_`` for ``.``.

    Args:
        sources: ``{submodule name: channels}`` (``aux_features``); empty: no heads.
        num_classes: output classes.
    """

    def __init__(self, sources: Dict[str, int], num_classes: int) -> None:
        super().__init__({name.replace(".", "_"): FCNHead(c, num_classes) for name, c in sources.items()})
        self.sources = {name: name.replace(".", "_") for name in sources}

    def capture(self, net: nn.Module):
        """The features the heads read, recorded during the forward passes of ``net`` inside the block."""
        return capture_outputs(net, list(self.sources))

    def loss(self, features: Dict[str, torch.Tensor], target: torch.Tensor, loss: Loss, weight: float,
             logs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The ``weight``-ed sum of the heads' losses on the captured ``features``; each is also put in ``logs``.

        Args:
            features: what ``capture`` recorded.
            target: the label map.
            loss: the segmentation loss of logits and labels.
            weight: weight of each head's loss.
            logs: receives ``train/loss_aux_KEY`` per head.
        """
        total = torch.zeros((), device=target.device)
        for name, key in self.sources.items():
            aux = loss(resize(self[key](features[name]), target.shape[-2:]), target)
            total = total + weight * aux
            logs[f"train/loss_aux_{key}"] = aux.detach()
        return total
