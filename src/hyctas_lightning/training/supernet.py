"""Supernet training (paper section 3.4 eq. 1, section 4.2): weight sharing with sandwich sampling."""
from __future__ import annotations

import random
from typing import Any, Dict, List, Optional

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassJaccardIndex

from hyctas_lightning.checkpoints import SUPERNET_KIND, require_kind, supernet_metadata
from hyctas_lightning.data.registry import class_path
from hyctas_lightning.evaluation.batchnorm import bn_state, load_bn_state, recalibrate_bn
from hyctas_lightning.models import SuperNet
from hyctas_lightning.search_space import Architecture, SearchSpace

from .losses import distillation_loss, segmentation_loss
from .sampling import SandwichSampler


class SupernetModule(L.LightningModule):
    """Owns the SuperNet, its SearchSpace and the sandwich sampler.

    Each training step runs the largest sub-network, the smallest and ``num_random`` random ones, back-
    propagating each loss in turn so that their gradients accumulate into one optimiser step (memory stays
    that of one sub-network). With ``distill`` the smaller ones learn the largest one's soft predictions.

    BatchNorm statistics are shared across widths and sub-networks, so validation recalibrates them per
    evaluated sub-network on the last ``bn_calibration_batches`` training batches (the same procedure the
    search uses) and restores them afterwards. Validation reports mIoU of the largest, the smallest and
    ``val_random`` fixed random sub-networks (1, 2, 3 branches in turn, drawn once from ``val_seed``).

    Optimiser and schedule come from the CLI (``optimizer:``/``lr_scheduler:`` in YAML); the schedule is
    stepped once per epoch.

    Args:
        space: the search space (layers, Fch, ops, widths, branch prior, ...); a dict in YAML.
        num_classes: output classes; the CLI links it to the data's class count.
        num_random: random sub-networks per step besides the largest and the smallest.
        distill: in-place distillation: the smaller sub-networks learn the largest one's soft predictions.
        distill_temperature: softmax temperature of the distillation loss.
        bootstrap_ratio: bootstrapped cross-entropy on the hardest fraction of pixels (None: plain cross-entropy).
        ignore_index: label of pixels that count in neither loss nor metrics.
        val_random: fixed random sub-networks evaluated at validation (1, 2, 3 branches in turn).
        val_seed: seed of those validation sub-networks.
        bn_calibration_batches: training batches that recalibrate BatchNorm for each evaluated sub-network.
        gradient_clip: clip the gradient norm of each optimiser step to this value (None: no clipping).
        seed: seed of the sampler; step ``t`` draws its sub-networks from ``(seed, t)`` alone.
    """

    checkpoint_kind = SUPERNET_KIND

    def __init__(self, space: Optional[SearchSpace] = None, num_classes: int = 19, num_random: int = 2,
                 distill: bool = False, distill_temperature: float = 1.0, bootstrap_ratio: Optional[float] = None,
                 ignore_index: int = 255, val_random: int = 3, val_seed: int = 0, bn_calibration_batches: int = 4,
                 gradient_clip: Optional[float] = None, seed: int = 0) -> None:
        super().__init__()
        space = SearchSpace.from_dict(space) if isinstance(space, dict) else (space or SearchSpace())
        self.save_hyperparameters(ignore=["space"])
        self.hparams["space"] = space.to_dict()  # plain data, so checkpoints load without pickled classes
        self.automatic_optimization = False
        self.space = space
        self.supernet = SuperNet(space, num_classes)
        self.sampler = SandwichSampler(space, num_random, seed)
        rng = random.Random(val_seed)
        self.val_archs: Dict[str, Architecture] = {"largest": space.largest(), "smallest": space.smallest()}
        self.val_archs.update({f"random{i}": space.sample(rng, branches=1 + i % 3) for i in range(val_random)})
        self.val_miou = nn.ModuleDict({k: MulticlassJaccardIndex(num_classes, ignore_index=ignore_index)
                                       for k in self.val_archs})
        self._calibration: List[torch.Tensor] = []
        self._val_bn: Dict[str, Dict[str, torch.Tensor]] = {}

    def forward(self, images: torch.Tensor, arch: Architecture) -> torch.Tensor:
        return self.supernet(images, arch)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, target = batch["image"], batch["mask"]
        optimizer = self.optimizers()
        optimizer.zero_grad()
        teacher, total, logs = None, 0.0, {}
        for name, arch in self.sampler.sample(self.global_step):
            logits = self(images, arch)
            if self.hparams.distill and teacher is not None:
                loss = distillation_loss(logits, teacher, self.hparams.distill_temperature)
            else:
                loss = segmentation_loss(logits, target, self.hparams.ignore_index, self.hparams.bootstrap_ratio)
            if name == "largest":
                teacher = logits.detach()
            self.manual_backward(loss)
            total += loss.detach()
            logs[f"train/loss_{name}"] = loss.detach()
            if name.startswith("random"):
                logs[f"train/branches_{name}"] = float(arch.num_branches)
        if self.hparams.gradient_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        self.log_dict(logs)
        self.log("loss", total, prog_bar=True)
        self.log_dict({f"b{k[-1]}": v for k, v in logs.items() if "branches" in k}, prog_bar=True, logger=False)
        self._remember_for_calibration(images)
        return total

    def _remember_for_calibration(self, images: torch.Tensor) -> None:
        self._calibration.append(images.detach())
        del self._calibration[: -self.hparams.bn_calibration_batches]

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        """Recalibrate BN for every evaluated sub-network once, keep the statistics, restore training's."""
        if not self._calibration:
            self._val_bn = {}
            return
        training_state = bn_state(self.supernet)
        for name, arch in self.val_archs.items():
            recalibrate_bn(self.supernet, lambda x, a=arch: self.supernet(x, a), self._calibration)
            self._val_bn[name] = bn_state(self.supernet)
        load_bn_state(self.supernet, training_state)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        training_state = bn_state(self.supernet) if self._val_bn else None
        for name, arch in self.val_archs.items():
            if self._val_bn:
                load_bn_state(self.supernet, self._val_bn[name])
            self.val_miou[name].update(self(batch["image"], arch).argmax(1), batch["mask"])
        if training_state is not None:
            load_bn_state(self.supernet, training_state)

    def on_validation_epoch_end(self) -> None:
        scores = {f"val/mIoU_{name}": metric.compute() for name, metric in self.val_miou.items()}
        for metric in self.val_miou.values():
            metric.reset()
        self.log_dict(scores)
        self.log("val/mIoU", scores["val/mIoU_largest"], prog_bar=True)
        self.log("val/mIoU_small", scores["val/mIoU_smallest"], prog_bar=True)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Everything the search needs travels in the checkpoint: space, data, classes, sampler."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data = None
        if dm is not None:
            data = {"class_path": class_path(type(dm)),
                    "init_args": {k: v for k, v in getattr(dm, "hparams", {}).items() if not k.startswith("_")},
                    "classes": list(getattr(dm, "classes", [])), "ignore_index": self.hparams.ignore_index}
        checkpoint["hyctas"] = supernet_metadata(self.space.to_dict(), data, self.hparams.num_classes,
                                                 self.sampler.state_dict())

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        meta = require_kind(checkpoint, SUPERNET_KIND, "this checkpoint")
        self.sampler.load_state_dict(meta["sampler"])
