"""Panoptic segmentation Panoptic-DeepLab style (paper section 4, tables 3 and 5): a searched network under a
semantic + instance-centre + centre-offset head, trained with the retrain recipe of ``SegmentationModule`` and
evaluated by PQ."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from hyctas_lightning.checkpoints import PANOPTIC_KIND
from hyctas_lightning.data.panoptic import thing_mask
from hyctas_lightning.data.transforms import eval_size
from hyctas_lightning.evaluation.panoptic_inference import PanopticPostProcess, connected_component_panoptic
from hyctas_lightning.evaluation.panoptic_quality import PanopticQuality, PanopticScores, format_pq_table
from hyctas_lightning.models import PanopticNetwork

from .losses import segmentation_loss, weighted_regression_loss
from .segmentation import SegmentationModule


class PanopticModule(SegmentationModule):
    """Trains a network with a panoptic head from scratch and evaluates it by PQ (and the semantic branch's mIoU).

    Takes every argument of ``SegmentationModule`` (network, recipe; the network must be a ChildNet, an
    architecture or a preset, as the head sits on its feature map, at output stride 8 or 4) plus the head, the
    loss weights and the post-processing. The loss is ``semantic_weight`` x bootstrapped cross-entropy (small
    instances' pixels weighted up by the data) + ``center_weight`` x centre MSE + ``offset_weight`` x offset L1
    (Panoptic-DeepLab and the release: 1 / 200 / 0.01). ``thing_ids`` defaults to the data module's. Test prints
    the PQ table and, with ``test_baseline``, the PQ of the trivial baseline that makes every connected thing
    region of the same semantic prediction one instance. Evaluation is single-scale without flipping.

    Args:
        thing_ids: class indices of the thing classes; None takes them from the data.
        panoptic_head: a registered panoptic head (``models.PANOPTIC_HEADS``).
        head_channels: width of the semantic branch (None: the feature map's).
        instance_channels: width of the centre and offset branches.
        semantic_weight: weight of the semantic loss.
        center_weight: weight of the centre heatmap loss.
        offset_weight: weight of the offset loss.
        center_threshold: heatmap values at or below this are no centre.
        nms_kernel: max-pooling NMS window on the heatmap (Cityscapes 7, COCO 41).
        top_k: at most this many centres per image.
        stuff_area: stuff classes smaller than this many pixels in an image become void (Cityscapes 2048 at
            1024x2048, COCO 4096).
        test_baseline: also score the connected-component baseline in test.
        optimizer: ``sgd`` (the recipe's, with ``momentum``) or ``adam`` (Panoptic-DeepLab's: lr 1e-3, no weight
            decay), both under the recipe's poly/warm-up schedule.
        **kwargs: the arguments of ``SegmentationModule``.
    """

    checkpoint_kind = PANOPTIC_KIND

    def __init__(self, thing_ids: Optional[Sequence[int]] = None, panoptic_head: str = "panoptic_deeplab",
                 head_channels: Optional[int] = None,
                 instance_channels: int = 32, semantic_weight: float = 1.0, center_weight: float = 200.0,
                 offset_weight: float = 0.01, center_threshold: float = 0.1, nms_kernel: int = 7, top_k: int = 200,
                 stuff_area: int = 2048, test_baseline: bool = True, optimizer: str = "sgd", **kwargs: Any) -> None:
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer: 'sgd' or 'adam', got '{optimizer}'")
        super().__init__(**kwargs)
        if self.test_flip or self.test_scales != (1.0,):
            raise ValueError("panoptic evaluation is single-scale without flipping: drop test_scales and test_flip")
        self.post_process: Optional[PanopticPostProcess] = None
        self.metrics = nn.ModuleDict()
        if thing_ids is not None:
            self._set_things(thing_ids)

    def build_net(self, source: Any, num_classes: int, **overrides: Any) -> nn.Module:
        backbone = super().build_net(source, num_classes, **overrides)
        hp = self.hparams
        return PanopticNetwork(backbone, num_classes, hp.panoptic_head, head_channels=hp.head_channels,
                               instance_channels=hp.instance_channels)

    def _set_things(self, thing_ids: Sequence[int]) -> None:
        """Fix the thing classes: post-processing and one PQ metric per evaluation (the baseline's too)."""
        hp = self.hparams
        hp["thing_ids"] = [int(k) for k in thing_ids]
        self.post_process = PanopticPostProcess(tuple(hp.thing_ids), hp.num_classes, hp.center_threshold,
                                                hp.nms_kernel, hp.top_k, hp.stuff_area)
        for name in ("val", "test", "baseline"):
            self.metrics[name] = PanopticQuality(hp.num_classes, hp.thing_ids)

    def setup(self, stage: str) -> None:
        """Take the thing classes from the data (which must agree with ``thing_ids`` when both are given)."""
        super().setup(stage)
        data_things = getattr(self.trainer.datamodule, "thing_ids", None)
        given = self.hparams.thing_ids
        if data_things is not None and given is not None and list(data_things) != list(given):
            raise ValueError(f"model.init_args.thing_ids is {list(given)} but the data's thing classes are "
                             f"{list(data_things)}; drop thing_ids from the config")
        things = given if given is not None else data_things
        if things is None:
            raise ValueError("the thing classes are unknown: set model.init_args.thing_ids or use a data module with "
                             "thing_ids (COCO panoptic, Cityscapes, synthetic)")
        self._set_things(things)

    # ------------------------------------------------------------------ training
    def build_optimizer(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        return super().build_optimizer()

    def _losses(self, out: Dict[str, torch.Tensor], batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        hp = self.hparams
        semantic = segmentation_loss(out["semantic"], batch["mask"], hp.ignore_index, hp.bootstrap_ratio,
                                     batch["semantic_weight"])
        center = weighted_regression_loss(out["center"], batch["center"], batch["center_weight"], "mse")
        offset = weighted_regression_loss(out["offset"], batch["offset"], batch["offset_weight"], "l1")
        total = hp.semantic_weight * semantic + hp.center_weight * center + hp.offset_weight * offset
        return {"loss": total, "semantic": semantic, "center": center, "offset": offset}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        with self.aux_heads.capture(self.net) as features:
            out = self.net(batch["image"])
        losses = self._losses(out, batch)
        logs = {f"train/loss_{k}": v.detach() for k, v in losses.items() if k != "loss"}
        loss = losses["loss"] + self._aux_loss(features, batch["mask"], logs)
        size = batch["image"].shape[0]
        self.log_dict(logs, batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        return loss

    # ------------------------------------------------------------------ evaluation
    def predict_panoptic(self, out: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Panoptic maps ``(N, H, W)`` from the network's outputs."""
        return self.post_process(out["semantic"].argmax(1), out["center"], out["offset"])

    def _evaluate(self, batch: dict, stage: str) -> Dict[str, torch.Tensor]:
        out = self.net(batch["image"])
        self.metrics[stage].update(self.predict_panoptic(out), batch["panoptic"])
        (self.val_iou if stage == "val" else self.test_iou).update(out["semantic"].argmax(1), batch["mask"])
        return out

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self._evaluate(batch, "val")
        self.log("val/loss", self._losses(out, batch)["loss"], sync_dist=True, batch_size=batch["image"].shape[0])

    def _log_scores(self, stage: str, scores: PanopticScores) -> None:
        for group, suffix in (("All", ""), ("Things", "_things"), ("Stuff", "_stuff")):
            summary = scores.summary(group)
            for key in ("pq", "sq", "rq"):
                self.log(f"{stage}/{key.upper()}{suffix}", summary[key], prog_bar=stage == "val" and key == "pq"
                         and not suffix)

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val", self.metrics["val"].compute())
        self.metrics["val"].reset()
        super().on_validation_epoch_end()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        out = self._evaluate(batch, "test")
        if self.hparams.test_baseline:
            is_thing = thing_mask(self.hparams.num_classes, self.hparams.thing_ids, out["semantic"].device)
            baseline = connected_component_panoptic(out["semantic"].argmax(1), is_thing, self.hparams.stuff_area)
            self.metrics["baseline"].update(baseline, batch["panoptic"])

    def on_test_epoch_end(self) -> None:
        names = self.classes or [f"class_{k}" for k in range(self.hparams.num_classes)]
        scores = self.metrics["test"].compute()
        self.metrics["test"].reset()
        self._log_scores("test", scores)
        lines = [f"\n{self.network_name}: panoptic quality (%)", format_pq_table(scores, names)]
        if self.hparams.test_baseline:
            baseline = self.metrics["baseline"].compute()
            self.metrics["baseline"].reset()
            self._log_scores("test_baseline", baseline)
            b = {g: baseline.summary(g)["pq"] for g in ("All", "Things", "Stuff")}
            ours = {g: scores.summary(g)["pq"] for g in ("All", "Things", "Stuff")}
            lines.append(f"PQ {100 * ours['All']:.2f} (things {100 * ours['Things']:.2f}, stuff "
                         f"{100 * ours['Stuff']:.2f}); baseline with every connected thing region one instance: PQ "
                         f"{100 * b['All']:.2f} (things {100 * b['Things']:.2f}, stuff {100 * b['Stuff']:.2f})")
        super().on_test_epoch_end()
        rank_zero_info("\n".join(lines) + "\n")

    def predict_step(self, batch: dict, batch_idx: int) -> List[torch.Tensor]:
        """Each image's panoptic map (int32, on the CPU) at the image's own size: evaluation padding cropped, a
        ``base_size`` resize undone (nearest, ids stay ids)."""
        panoptic = self.predict_panoptic(self.net(batch["image"])).cpu()
        transforms = getattr(self.trainer.datamodule, "transforms", None) if self._trainer is not None else None
        if "image_size" not in batch or transforms is None:
            return list(panoptic.to(torch.int32))
        maps = []
        for p, size in zip(panoptic, batch["image_size"]):
            height, width = eval_size(transforms, size)
            p = p[:height, :width]
            if tuple(p.shape) != tuple(size):  # float32 holds the ids exactly (below 2^24)
                p = F.interpolate(p[None, None].float(), size=tuple(size), mode="nearest")[0, 0].long()
            maps.append(p.to(torch.int32))
        return maps

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        hp = self.hparams
        checkpoint["hyctas"]["panoptic"] = {
            "thing_ids": hp.thing_ids, "head": hp.panoptic_head, "head_channels": hp.head_channels,
            "instance_channels": hp.instance_channels,
            "post_process": {"threshold": hp.center_threshold, "nms_kernel": hp.nms_kernel, "top_k": hp.top_k,
                             "stuff_area": hp.stuff_area}}
