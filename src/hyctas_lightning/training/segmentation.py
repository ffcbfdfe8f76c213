"""Training a fixed architecture (a ChildNet) for semantic segmentation."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassJaccardIndex

from hyctas_lightning.models import ChildNet
from hyctas_lightning.search_space import Architecture


class SegmentationModule(L.LightningModule):
    """A ChildNet built fresh from an architecture JSON (a preset or a search result), trained with
    cross-entropy and evaluated by mIoU. Optimiser and schedule come from the CLI (``--optimizer``,
    ``--lr_scheduler``) unless a subclass defines ``configure_optimizers``.
    """

    def __init__(self, arch: Union[str, Path], num_classes: int = 19, fch: Optional[int] = None,
                 output_stride: Optional[int] = None, ignore_index: int = 255) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.architecture = Architecture.load(arch)
        self.net = ChildNet(self.architecture, num_classes, fch=fch, output_stride=output_stride)
        self.ignore_index = ignore_index
        self.val_miou = MulticlassJaccardIndex(num_classes, ignore_index=ignore_index, average="macro")
        self.test_miou = MulticlassJaccardIndex(num_classes, ignore_index=ignore_index, average="macro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self(batch["image"]), batch["mask"], ignore_index=self.ignore_index)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch: dict, metric: MulticlassJaccardIndex, stage: str) -> None:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["mask"], ignore_index=self.ignore_index)
        metric.update(logits.argmax(1), batch["mask"])
        self.log(f"{stage}/loss", loss, sync_dist=True)
        self.log(f"{stage}/mIoU", metric, prog_bar=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_miou, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_miou, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self(batch["image"]).argmax(1)
