"""Retraining and evaluating one segmentation network: a searched architecture or a registered baseline,
all under the same recipe (paper section 4.2, SPEC sections 5 and 7)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from hyctas_lightning.checkpoints import SEGMENTATION_KIND, expand_state_dict, network_metadata, require_kind
from hyctas_lightning.data.transforms import to_input_size
from hyctas_lightning.errors import ClassCountError
from hyctas_lightning.evaluation.inference import check_scales, segment
from hyctas_lightning.evaluation.metrics import format_iou_table, mean_iou, per_class_iou
from hyctas_lightning.models import ChildNet, create_network, list_networks, load_architecture
from hyctas_lightning.models.factory import network_heads
from hyctas_lightning.registry import import_plugins
from hyctas_lightning.search_space import Architecture

from .auxiliary import AuxiliaryHeads, aux_features
from .dashboard import ValidationMedia
from .ddp import log_global
from .losses import segmentation_loss
from .schedules import PolyWarmupLR, drop_path_modules, scheduled_drop_path


def hparam_as_stored(name: str, value: Any) -> Any:
    """``value`` of argument ``name`` as a checkpoint stores it (``arch``: the architecture itself, not the preset or
    file naming it), so a value given on the command line can be compared with a checkpoint's.

    Args:
        name: the argument.
        value: its value as parsed.
    """
    return load_architecture(value).to_dict() if name == "arch" and value is not None else value


class SegmentationModule(L.LightningModule):
    """Trains one network from scratch with the HyCTAS retrain recipe and evaluates it by mIoU.

    Searched networks and hand-designed baselines train under identical settings: every part of the recipe is an
    argument. The defaults follow the release recipe as its code runs (with the paper's drop path and a linear
    warm-up); ``configs/retrain/`` holds it and the paper's. Validation is single-scale whole-image; test and
    predict add test-time augmentation when set, and test prints the per-class IoU table.

    Args:
        arch: the architecture to build as a ChildNet: a preset name (``hyctas_s``), a JSON file (e.g. a search's
            ``best.json`` or ``topk/*.json``) or its dict form. Give exactly one of ``arch`` and ``network``.
        network: a registered network instead (``lraspp_mobilenet_v3_large``, a preset, or one of ``plugins``).
        num_classes: output classes; the CLI links it to the data's class count.
        fch: filter multiplier of ``arch`` (None keeps the architecture's own).
        output_stride: 8, or 4 to merge the stem's stride-4 feature before the classifier (None: the
            architecture's own).
        plugins: modules to import first, so networks, ops and heads registered in your own files can be named.
        head: aggregation head of ``arch`` (a name in ``models.HEADS``: ``progressive``, ``plain``; None keeps the
            architecture's own).
        classifier: classifier of ``arch`` (a name in ``models.CLASSIFIERS``: ``linear``, ``attention``; None keeps
            the architecture's own).
        ignore_index: label of pixels that count in neither loss nor metrics.
        lr: peak learning rate of SGD.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        warmup_iters: steps of linear warm-up before the poly decay (the release warms up geometrically).
        warmup_factor: learning-rate factor at the first warm-up step.
        poly_power: exponent of the poly decay, stepped every optimiser step over the whole run.
        bootstrap_ratio: bootstrapped cross-entropy on the hardest fraction of pixels (None: plain cross-entropy).
        aux_weight: weight of the auxiliary FCN heads on the branches' stride-16/32 features (release: 0.2; 0
            disables them; training only).
        drop_path_rate: final probability of scheduled drop path, rising linearly from 0 over training.
        bn_momentum: momentum of every BatchNorm (None keeps PyTorch's 0.1, which the release also trains with:
            its 0.01 flag is never applied).
        test_scales: image scales whose softmax is averaged in test and predict.
        test_flip: also average the horizontally flipped pass in test and predict.
    """

    checkpoint_kind = SEGMENTATION_KIND
    flops_per_batch = None  # read by Lightning's ThroughputMonitor, if a config uses it: not counted here

    def __init__(self, arch: Optional[Union[str, Dict[str, Any]]] = None, network: Optional[str] = None,
                 num_classes: int = 19, fch: Optional[int] = None, output_stride: Optional[int] = None,
                 plugins: Sequence[str] = (), head: Optional[str] = None, classifier: Optional[str] = None,
                 ignore_index: int = 255, lr: float = 0.05, momentum: float = 0.9,
                 weight_decay: float = 1e-4, warmup_iters: int = 1000, warmup_factor: float = 1e-3,
                 poly_power: float = 0.9, bootstrap_ratio: Optional[float] = 0.2, aux_weight: float = 0.2,
                 drop_path_rate: float = 0.2, bn_momentum: Optional[float] = None,
                 test_scales: Sequence[float] = (1.0,), test_flip: bool = False) -> None:
        super().__init__()
        # test-time augmentation is chosen at evaluation, not stored: a checkpoint's hyper-parameters override the
        # command line when LightningCLI loads it
        self.save_hyperparameters(ignore=["test_scales", "test_flip"])
        self.test_scales = check_scales(test_scales)
        self.test_flip = test_flip
        import_plugins(plugins)
        architecture = one_source(arch, network)
        if architecture is not None:
            self.hparams["arch"] = architecture.to_dict()  # the checkpoint stands alone if the file moves
        self.net = self.build_net(architecture or network, num_classes, fch=fch, output_stride=output_stride,
                                  head=head, classifier=classifier)
        self.network_name = network or (Path(arch).stem if isinstance(arch, (str, Path)) else "architecture")
        self.aux_heads = AuxiliaryHeads(aux_features(self.net) if aux_weight > 0 else {}, num_classes)
        if bn_momentum is not None:
            set_bn_momentum(self, bn_momentum)
        self.drop_paths = drop_path_modules(self.net)
        self.val_iou = per_class_iou(num_classes, ignore_index)
        self.test_iou = per_class_iou(num_classes, ignore_index)
        self.media = ValidationMedia()  # with a WandbLogger: per-class IoU table and masks of a few val images
        self.classes: Optional[List[str]] = None
        self.palette: Optional[List[Tuple[int, int, int]]] = None
        self._total_steps = 1

    hparam_as_stored = staticmethod(hparam_as_stored)

    def build_net(self, source: Any, num_classes: int, **overrides: Any) -> nn.Module:
        """The network this module trains, from an Architecture or a registered name and ``create_network``'s
        size/head overrides (a subclass may wrap it, e.g. under a panoptic head)."""
        return create_network(source, num_classes, **overrides)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    @property
    def aux_sources(self) -> Dict[str, str]:
        """``{submodule name: head key}`` of the auxiliary heads."""
        return self.aux_heads.sources

    def network_spec(self) -> Dict[str, Any]:
        """What rebuilds this network (``create_network``'s arguments), stored in its checkpoints."""
        hp = self.hparams
        return {"arch": hp.arch, "network": hp.network, "num_classes": hp.num_classes, "fch": hp.fch,
                "output_stride": hp.output_stride, "plugins": list(hp.plugins), "head": hp.head,
                "classifier": hp.classifier}

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(logits, target, self.hparams.ignore_index, self.hparams.bootstrap_ratio)

    # ------------------------------------------------------------------ data metadata
    def setup(self, stage: str) -> None:
        """Take class names and colours from the data, and refuse a class count that does not match it."""
        found = data_classes(self.trainer.datamodule, self.hparams.num_classes)
        if found is not None:
            self.classes, self.palette = found

    # ------------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        self._total_steps = self.trainer.estimated_stepping_batches
        if self.hparams.drop_path_rate > 0 and not self.drop_paths:
            rank_zero_warn(f"drop_path_rate={self.hparams.drop_path_rate} has no effect: {self.network_name} has "
                           "no DropPath modules")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        rate = scheduled_drop_path(self.hparams.drop_path_rate, self.global_step, self._total_steps)
        for m in self.drop_paths:
            m.drop_prob = rate
        if self.drop_paths:
            self.log("train/drop_path", rate, batch_size=batch["image"].shape[0])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, target = batch["image"], batch["mask"]
        with self.aux_heads.capture(self.net) as features:
            logits = self.net(images)
        loss = self._loss(logits, target)
        logs = {"train/loss_main": loss.detach()}
        loss = loss + self._aux_loss(features, target, logs)
        self.log_dict(logs, batch_size=images.shape[0])
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def _aux_loss(self, features: Dict[str, torch.Tensor], target: torch.Tensor,
                  logs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted auxiliary heads' losses on the captured ``features``; each is also put in ``logs``."""
        return self.aux_heads.loss(features, target, self._loss, self.hparams.aux_weight, logs)

    def build_optimizer(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

    def configure_optimizers(self) -> Dict[str, Any]:
        """SGD (``build_optimizer``) with the poly/warm-up schedule stepped every optimiser step over the run."""
        hp = self.hparams
        optimizer = self.build_optimizer()
        scheduler = PolyWarmupLR.for_run(optimizer, self.trainer.estimated_stepping_batches, hp.warmup_iters,
                                         hp.poly_power, hp.warmup_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.net(batch["image"])
        self.log("val/loss", self._loss(logits, batch["mask"]), sync_dist=True, batch_size=logits.shape[0])
        self.val_iou.update(logits.argmax(1), batch["mask"])
        self.media.remember(self, batch, logits, batch_idx)

    def on_validation_epoch_end(self) -> None:
        ious = self.val_iou.compute()
        self.val_iou.reset()
        log_global(self, {"val/mIoU": mean_iou(ious)}, prog_bar=True)  # compute() summed every process's counts
        self.media.log(self, ious, self.class_names(len(ious)))

    def class_names(self, count: int) -> List[str]:
        return list(self.classes or [f"class_{i}" for i in range(count)])

    def _scores(self, images: torch.Tensor) -> torch.Tensor:
        return segment(self.net, images, self.test_scales, self.test_flip)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.test_iou.update(self._scores(batch["image"]).argmax(1), batch["mask"])

    def on_test_epoch_end(self) -> None:
        ious = self.test_iou.compute()
        self.test_iou.reset()
        names = self.class_names(len(ious))
        log_global(self, {"test/mIoU": mean_iou(ious), **{f"test/IoU/{n}": v for n, v in zip(names, ious)
                                                         if not v.isnan()}})
        self.media.log(self, ious, names, prefix="test")
        tta = f"scales {list(self.test_scales)}{' + flip' if self.test_flip else ''}"
        rank_zero_info(f"\n{self.network_name}: per-class IoU (%), {tta}\n{format_iou_table(ious.cpu(), names)}\n")

    def predict_step(self, batch: dict, batch_idx: int) -> Union[torch.Tensor, List[torch.Tensor]]:
        """Label maps on the CPU, as uint8 where the classes fit, so a split's predictions stay small: one ``(H, W)``
        map per image at the image's own size when the batch gives its ``image_size`` (evaluation padding cropped,
        a ``base_size`` resize undone on the scores), else the batch's ``(N, H, W)``."""
        transforms = getattr(self.trainer.datamodule, "transforms", None) if self._trainer is not None else None
        return label_maps(self._scores(batch["image"]), batch.get("image_size"), transforms,
                          self.hparams.num_classes)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Mark the checkpoint and carry what rebuilding, exporting and colouring need without the config."""
        checkpoint["hyctas"] = network_metadata(self.network_spec(), self.network_name, self.classes, self.palette,
                                                self.hparams.ignore_index, self.checkpoint_kind)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        meta = require_kind(checkpoint, self.checkpoint_kind, "this checkpoint")
        check_heads(self.net, meta["network"])
        checkpoint["state_dict"] = expand_state_dict(checkpoint["state_dict"])  # model-zoo fp16/int8 weights
        self.network_name = meta.get("name", self.network_name)
        self.classes = self.classes or meta.get("classes")
        self.palette = self.palette or meta.get("palette")


def check_heads(net: nn.Module, spec: Dict[str, Any]) -> None:
    """Refuse, with the fix, a checkpoint whose network has another head or classifier than ``net``.

    Args:
        net: the network built from the config.
        spec: the checkpoint's ``network`` entry.
    """
    if spec.get("arch") is None or not isinstance(net, ChildNet):
        return
    stored = network_heads(spec)
    built = (net.arch.head, net.arch.classifier)
    if stored != built:
        raise ValueError(f"the checkpoint's network has head '{stored[0]}' and classifier '{stored[1]}', this "
                         f"module builds '{built[0]}' and '{built[1]}': set model.init_args.head and "
                         "model.init_args.classifier (or \"head\"/\"classifier\" in the architecture JSON) "
                         "to match")


def set_bn_momentum(module: nn.Module, momentum: float) -> None:
    """Set the momentum of every BatchNorm in ``module``.

    Args:
        module: the module.
        momentum: the running statistics' update factor.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


def data_classes(datamodule: Any, num_classes: int) -> Optional[Tuple[List[str], Optional[List[Tuple[int, ...]]]]]:
    """The data's class names and palette (None if it names no classes); a class count other than the model's is
    refused with the fix.

    Args:
        datamodule: the trainer's data module.
        num_classes: the model's class count.
    """
    classes = list(getattr(datamodule, "classes", None) or [])
    if not classes:
        return None
    if len(classes) != num_classes:
        raise ClassCountError(f"model.init_args.num_classes is {num_classes} but the data has {len(classes)} "
                              f"classes; drop num_classes from the config (the CLI links it)")
    palette = [tuple(int(v) for v in c) for c in getattr(datamodule, "palette", None) or []] or None
    return classes, palette


def label_maps(scores: torch.Tensor, sizes: Optional[Sequence[Any]], transforms: Any,
               num_classes: int) -> Union[torch.Tensor, List[torch.Tensor]]:
    """Label maps of class scores on the CPU, uint8 where the classes fit: one per image at its own size when the
    batch gives the sizes and the data its transforms, else the batch's ``(N, H, W)``.

    Args:
        scores: ``(N, C, H, W)`` class scores.
        sizes: each image's ``image_size`` (None: not given).
        transforms: the data's evaluation transforms (None: none known).
        num_classes: classes of the model.
    """
    dtype = torch.uint8 if num_classes <= 256 else torch.int32
    if sizes is None or transforms is None:
        return scores.argmax(1).to(dtype).cpu()
    return [to_input_size(s, size, transforms).argmax(0).to(dtype).cpu() for s, size in zip(scores, sizes)]


def one_source(arch: Any, network: Optional[str]) -> Optional[Architecture]:
    """The architecture to build (None for a registered ``network``); exactly one of the two must be given.

    Args:
        arch: a preset name, an architecture JSON file or its dict form.
        network: a registered network name.
    """
    if (arch is None) == (network is None):
        raise ValueError("give exactly one of `arch` (a preset such as hyctas_s, or an architecture JSON such as "
                         f"a search's best.json) or `network` (one of: {', '.join(list_networks())})")
    return load_architecture(arch) if arch is not None else None
