"""Estimating a sub-network by a short training from the weights it inherits, for a supernet whose plain estimates
do not rank.

Under the sandwich rule a supernet scores what it trains every step (the largest and smallest sub-networks reach
their standalone mIoU inside it) while the sub-networks it never trains as themselves score far below theirs. A few
steps of training of each inherited child on the same training crops, before it is scored, bring it towards what it
can reach, as once-for-all networks fine-tune the sub-networks they hand out (Cai et al., ICLR 2020); every candidate
gets the same steps, crops and learning rate, so the estimate stays a comparison.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from hyctas_lightning.evaluation.batchnorm import recalibrate_bn
from hyctas_lightning.evaluation.weight_sharing import SubnetScorer
from hyctas_lightning.models import ChildNet
from hyctas_lightning.search_space import Architecture

Batch = Tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Finetune:
    """The short training every candidate gets before it is scored.

    Args:
        steps: SGD steps on the training batches (cycled in order).
        lr: initial learning rate, decayed to zero by the poly rule (power 0.9) over the steps.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        images: training crops drawn once (seeded, augmented as in training) and cycled by every candidate.
        inherit: start from the supernet's weights; False starts each candidate from a fresh, seeded initialisation
            (the control: what the same short training ranks without the shared weights).
    """

    steps: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    images: int = 512
    inherit: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0 or self.images < 1:
            raise ValueError(f"finetune: steps >= 1, lr > 0 and images >= 1, got steps {self.steps}, lr {self.lr}, "
                             f"images {self.images}")


class FinetuneScorer(SubnetScorer):
    """Inherit, train briefly, recalibrate BatchNorm, score: a :class:`SubnetScorer` (same calibration images,
    validation batches and metric) whose candidates are trained before they are scored.

    Each candidate is a :class:`ChildNet` with the supernet's weights (the supernet itself is untouched), trained
    ``finetune.steps`` steps of cross-entropy on ``train`` (bf16 autocast on a GPU), its BatchNorm statistics then
    recalibrated on the calibration images and its mIoU measured on the validation batches.

    Args:
        supernet: the trained weight-sharing network, on the device to train on.
        train: ``(images, masks)`` training batches (see ``collect_images(..., with_masks=True)``).
        calibration: training image batches for BN recalibration after the training.
        num_classes: classes of the logits.
        ignore_index: label ignored by the loss and the metric.
        finetune: the training.
        images_per_pass: the most images one recalibration or validation pass takes.
    """

    def __init__(self, supernet: nn.Module, train: Sequence[Batch], calibration: Sequence[torch.Tensor],
                 num_classes: int, ignore_index: int = 255, finetune: Finetune = Finetune(),
                 images_per_pass: Optional[int] = 128) -> None:
        if not train:
            raise ValueError("FinetuneScorer: no training batches to fine-tune on")
        super().__init__(supernet, calibration, num_classes, ignore_index, images_per_pass)
        self.device = next(supernet.parameters()).device
        self.train_batches = [(x.to(self.device), y.to(self.device)) for x, y in train]
        self.finetune = finetune

    def start(self, arch: Architecture) -> ChildNet:
        """``arch``'s child before the training: the supernet's weights, or (``inherit`` off) a fresh
        initialisation from a fixed seed."""
        if self.finetune.inherit:
            return ChildNet.from_supernet(self.supernet, arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            child = ChildNet(arch, self.supernet.num_classes, fch=self.supernet.fch, output_stride=8,
                             stem_head_width=self.supernet.space.stem_head_width)
        return child.to(self.device)

    def train(self, arch: Architecture) -> ChildNet:
        """``arch``'s child after the fine-tuning (training mode)."""
        child = self.start(arch).train()
        recipe = self.finetune
        optimizer = torch.optim.SGD(child.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay)
        # retraining's poly rule (training.PolyWarmupLR; the training layer sits above this one)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / recipe.steps) ** 0.9)
        for step in range(recipe.steps):
            images, masks = self.train_batches[step % len(self.train_batches)]
            with torch.autocast("cuda", torch.bfloat16, enabled=self.device.type == "cuda"):
                logits = child(images)
            loss = F.cross_entropy(logits.float(), masks.long(), ignore_index=self.ignore_index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        return child

    def __call__(self, arch: Architecture, validation: Sequence[Batch], restore: bool = True) -> float:
        """Fine-tune ``arch``'s child, recalibrate and score it (the supernet is never changed: ``restore`` is moot)."""
        child = self.train(arch)
        with torch.no_grad():
            recalibrate_bn(child, lambda x: child(x.to(self.device)), self.calibration)
            return self.score([(child(images.to(self.device)).argmax(1), masks.to(self.device))
                               for images, masks in validation])


def finetune_from(options: Optional[Dict[str, float]]) -> Optional[Finetune]:
    """A :class:`Finetune` from a config mapping (``{steps, lr, momentum, weight_decay, images}``), None for none.

    Args:
        options: the mapping, or None.
    """
    if options is None:
        return None
    fields = {f.name for f in dataclasses.fields(Finetune)}
    unknown = set(options) - fields
    if unknown:
        raise ValueError(f"finetune: unknown settings {sorted(unknown)}; use {', '.join(sorted(fields))}")
    return Finetune(**options)


__all__: List[str] = ["Finetune", "FinetuneScorer", "finetune_from"]
