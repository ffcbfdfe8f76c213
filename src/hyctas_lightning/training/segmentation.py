"""Retraining and evaluating one segmentation network: a searched architecture or a registered baseline,
all under the same recipe (paper section 4.2, SPEC sections 5 and 7)."""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchvision.models.segmentation.fcn import FCNHead

from hyctas_lightning.deploy.zoo import expand_state_dict
from hyctas_lightning.evaluation.inference import check_scales, segment
from hyctas_lightning.evaluation.metrics import format_iou_table, mean_iou, per_class_iou
from hyctas_lightning.models import NETWORKS, ChildNet, PanopticNetwork, build_network
from hyctas_lightning.models.blocks import resize
from hyctas_lightning.search_space import Architecture

from .losses import segmentation_loss
from .schedules import PolyWarmupLR, drop_path_modules, scheduled_drop_path

CHECKPOINT_KIND = "hyctas-segmentation"
ArchSource = Union[str, Path, Dict[str, Any], Architecture]


def load_architecture(arch: ArchSource) -> Architecture:
    """An Architecture from a JSON file path, its dict form (as stored in checkpoints) or itself."""
    if isinstance(arch, Architecture):
        return arch
    return Architecture.from_dict(arch) if isinstance(arch, dict) else Architecture.load(arch)


def build_segmentation_network(arch: Optional[ArchSource] = None, network: Optional[str] = None,
                               num_classes: int = 19, fch: Optional[int] = None, output_stride: Optional[int] = None,
                               plugins: Sequence[str] = ()) -> nn.Module:
    """A fresh images-to-logits network: the ChildNet of ``arch``, or the registered ``network``. ``plugins`` are
    modules imported first, so networks and ops registered in a user's own files can be named."""
    for module in plugins:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ValueError(f"plugins: cannot import '{module}' ({e}); put its folder on PYTHONPATH") from None
    if (arch is None) == (network is None):
        raise ValueError("give exactly one of `arch` (an architecture JSON such as configs/arch/hyctas_s.json or a "
                         f"search's topk/*.json) or `network` (one of: {', '.join(NETWORKS.names())})")
    if arch is not None:
        return ChildNet(load_architecture(arch), num_classes, fch=fch, output_stride=output_stride)
    if network not in NETWORKS:
        raise ValueError(f"network '{network}' is not registered; registered: {', '.join(NETWORKS.names())} "
                         "(name the module that registers your own in `plugins`)")
    if fch is not None or output_stride is not None:
        raise ValueError(f"fch and output_stride set the size of `arch` networks; remove them for network '{network}'")
    return build_network(network, num_classes)


def aux_features(net: nn.Module) -> Dict[str, int]:
    """Where auxiliary heads attach ({submodule name: channels}): a ChildNet's per-branch projections in its
    aggregation head (the stride-8/16/32 branch features), or what a registered network declares."""
    if isinstance(net, ChildNet):
        return {f"head.proj.{s}": net.head.out_channels for s in net.head.strides}
    if isinstance(net, PanopticNetwork):
        return {f"backbone.{name}": c for name, c in aux_features(net.backbone).items()}
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


class SegmentationModule(L.LightningModule):
    """Trains a network from scratch with the HyCTAS retrain recipe and evaluates it by mIoU.

    Exactly one of ``arch`` (architecture JSON; ``fch`` and ``output_stride`` override its own) and ``network``
    (a name from ``hyctas_lightning.models.NETWORKS``, e.g. ``lraspp_mobilenet_v3_large``) picks the network;
    ``plugins`` names modules to import first (a user's own registered networks or ops).

    Recipe: SGD with momentum, poly learning rate (``poly_power``) after a linear warm-up of ``warmup_iters``
    steps from ``warmup_factor`` of ``lr``, bootstrapped cross-entropy on the hardest ``bootstrap_ratio`` of
    pixels (None: plain cross-entropy), auxiliary FCN heads weighted by ``aux_weight`` (0 disables them; training
    only), drop path rising linearly to ``drop_path_rate``, and ``bn_momentum`` for every BatchNorm (None keeps
    PyTorch's 0.1; the release uses 0.01). Gradient clipping is the Trainer's ``gradient_clip_val``. The other
    defaults are the release recipe; configs/retrain/ holds it and the paper's.

    Validation is single-scale whole-image; test and predict add ``test_scales`` and ``test_flip`` when set.
    Test prints the per-class IoU table.
    """

    checkpoint_kind = CHECKPOINT_KIND

    def __init__(self, arch: Optional[Union[str, Dict[str, Any]]] = None, network: Optional[str] = None,
                 num_classes: int = 19, fch: Optional[int] = None, output_stride: Optional[int] = None,
                 plugins: Sequence[str] = (), ignore_index: int = 255, lr: float = 0.05, momentum: float = 0.9,
                 weight_decay: float = 1e-4, warmup_iters: int = 1000, warmup_factor: float = 1e-3,
                 poly_power: float = 0.9, bootstrap_ratio: Optional[float] = 0.2, aux_weight: float = 0.4,
                 drop_path_rate: float = 0.2, bn_momentum: Optional[float] = None,
                 test_scales: Sequence[float] = (1.0,), test_flip: bool = False) -> None:
        super().__init__()
        # test-time augmentation is chosen at evaluation, not stored: a checkpoint's hyper-parameters override the
        # command line when LightningCLI loads it
        self.save_hyperparameters(ignore=["test_scales", "test_flip"])
        self.test_scales = check_scales(test_scales)
        self.test_flip = test_flip
        architecture = load_architecture(arch) if arch is not None else None
        if architecture is not None:
            self.hparams["arch"] = architecture.to_dict()  # the checkpoint stands alone if the file moves
        self.net = self.build_net(architecture, network, num_classes, fch, output_stride, plugins)
        self.network_name = network or (Path(arch).stem if isinstance(arch, (str, Path)) else "architecture")
        sources = aux_features(self.net) if aux_weight > 0 else {}
        self.aux_sources = {name: name.replace(".", "_") for name in sources}
        self.aux_heads = nn.ModuleDict({key: FCNHead(sources[name], num_classes)
                                        for name, key in self.aux_sources.items()})
        if bn_momentum is not None:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = bn_momentum
        self.drop_paths = drop_path_modules(self.net)
        self.val_iou = per_class_iou(num_classes, ignore_index)
        self.test_iou = per_class_iou(num_classes, ignore_index)
        self.classes: Optional[List[str]] = None
        self.palette: Optional[List[Tuple[int, int, int]]] = None
        self._total_steps = 1

    def build_net(self, arch: Optional[Architecture], network: Optional[str], num_classes: int, fch: Optional[int],
                  output_stride: Optional[int], plugins: Sequence[str]) -> nn.Module:
        """The network this module trains (a subclass may wrap it, e.g. under a panoptic head)."""
        return build_segmentation_network(arch, network, num_classes, fch, output_stride, plugins)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def network_spec(self) -> Dict[str, Any]:
        """The arguments of ``build_segmentation_network`` that rebuild this network."""
        hp = self.hparams
        return {"arch": hp.arch, "network": hp.network, "num_classes": hp.num_classes, "fch": hp.fch,
                "output_stride": hp.output_stride, "plugins": list(hp.plugins)}

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return segmentation_loss(logits, target, self.hparams.ignore_index, self.hparams.bootstrap_ratio)

    # ------------------------------------------------------------------ data metadata
    def setup(self, stage: str) -> None:
        """Take class names and colours from the data, and refuse a class count that does not match it."""
        dm = self.trainer.datamodule
        classes = list(getattr(dm, "classes", None) or [])
        if not classes:
            return
        if len(classes) != self.hparams.num_classes:
            raise ValueError(f"model.init_args.num_classes is {self.hparams.num_classes} but the data has "
                             f"{len(classes)} classes; drop num_classes from the config (the CLI links it)")
        self.classes = classes
        self.palette = [tuple(int(v) for v in c) for c in getattr(dm, "palette", None) or []] or None

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
        with capture_outputs(self.net, list(self.aux_sources)) as features:
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
        total = target.new_zeros((), dtype=torch.float32)
        for name, key in self.aux_sources.items():
            aux = self._loss(resize(self.aux_heads[key](features[name]), target.shape[-2:]), target)
            total = total + self.hparams.aux_weight * aux
            logs[f"train/loss_aux_{key}"] = aux.detach()
        return total

    def build_optimizer(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

    def configure_optimizers(self) -> Dict[str, Any]:
        """SGD (``build_optimizer``) with the poly/warm-up schedule stepped every optimiser step over the run."""
        hp = self.hparams
        total = self.trainer.estimated_stepping_batches
        if total == float("inf"):
            raise ValueError("the poly schedule needs a finite run: set trainer.max_steps or trainer.max_epochs")
        total = max(1, int(total))
        warmup = hp.warmup_iters
        if warmup >= total:
            rank_zero_warn(f"warmup_iters={warmup} is not below the run's {total} steps; warming up over "
                           f"{total - 1} instead (lower model.init_args.warmup_iters)")
            warmup = total - 1
        optimizer = self.build_optimizer()
        scheduler = PolyWarmupLR(optimizer, total, warmup, hp.poly_power, hp.warmup_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.net(batch["image"])
        self.log("val/loss", self._loss(logits, batch["mask"]), sync_dist=True, batch_size=logits.shape[0])
        self.val_iou.update(logits.argmax(1), batch["mask"])

    def on_validation_epoch_end(self) -> None:
        ious = self.val_iou.compute()
        self.val_iou.reset()
        self.log("val/mIoU", mean_iou(ious), prog_bar=True)

    def _scores(self, images: torch.Tensor) -> torch.Tensor:
        return segment(self.net, images, self.test_scales, self.test_flip)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.test_iou.update(self._scores(batch["image"]).argmax(1), batch["mask"])

    def on_test_epoch_end(self) -> None:
        ious = self.test_iou.compute()
        self.test_iou.reset()
        names = self.classes or [f"class_{i}" for i in range(len(ious))]
        self.log("test/mIoU", mean_iou(ious))
        self.log_dict({f"test/IoU/{n}": v for n, v in zip(names, ious) if not v.isnan()})
        tta = f"scales {list(self.test_scales)}{' + flip' if self.test_flip else ''}"
        if self.trainer.is_global_zero:
            print(f"\n{self.network_name}: per-class IoU (%), {tta}\n{format_iou_table(ious.cpu(), names)}\n")

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Label maps ``(N, H, W)`` on the CPU, as uint8 where the classes fit, so a split's predictions stay small."""
        dtype = torch.uint8 if self.hparams.num_classes <= 256 else torch.int32
        return self._scores(batch["image"]).argmax(1).to(dtype).cpu()

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Mark the checkpoint and carry what rebuilding, exporting and colouring need without the config."""
        checkpoint["hyctas"] = {"kind": self.checkpoint_kind, "network": self.network_spec(), "name": self.network_name,
                                "classes": self.classes, "palette": self.palette,
                                "ignore_index": self.hparams.ignore_index}

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        meta = checkpoint_meta(checkpoint, "this checkpoint", self.checkpoint_kind)
        checkpoint["state_dict"] = expand_state_dict(checkpoint["state_dict"])  # model-zoo fp16/int8 weights
        self.network_name = meta.get("name", self.network_name)
        self.classes = self.classes or meta.get("classes")
        self.palette = self.palette or meta.get("palette")


def checkpoint_meta(checkpoint: Dict[str, Any], where: Union[str, Path],
                    expected: str = CHECKPOINT_KIND) -> Dict[str, Any]:
    """The ``hyctas`` entry of a retrain checkpoint of kind ``expected``; a clear error for any other checkpoint."""
    kind = checkpoint.get("hyctas", {}).get("kind") if isinstance(checkpoint, dict) else None
    if kind == expected:
        return checkpoint["hyctas"]
    if kind == "hyctas-supernet":
        raise ValueError(f"{where} is a supernet checkpoint, not a retrained network: search it (`hyctas search "
                         "--ckpt ...`), retrain a topk/*.json with `hyctas fit --config configs/retrain/...`, or "
                         "pass --arch for an untrained network")
    raise ValueError(f"{where} is not a hyctas retrain checkpoint of kind '{expected}' (its 'hyctas.kind' is {kind!r}); "
                     "train one with `hyctas fit --config configs/retrain/...` (panoptic: configs/panoptic/...)")


def load_segmentation_network(path: Union[str, Path]) -> Tuple[nn.Module, Dict[str, Any]]:
    """The trained network of a retrain checkpoint (eval mode, on the CPU, no auxiliary heads) and its metadata
    (``network`` build arguments, ``name``, ``classes``, ``palette``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    meta = checkpoint_meta(checkpoint, path)
    net = build_segmentation_network(**meta["network"])
    state = expand_state_dict(checkpoint["state_dict"])
    net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    return net.eval(), meta


def load_networks(arch: Sequence[str] = (), ckpt: Sequence[str] = (), network: Sequence[str] = (),
                  num_classes: int = 19, fch: Optional[int] = None,
                  output_stride: Optional[int] = None) -> Dict[str, nn.Module]:
    """Networks by display name for the command-line tools: fresh ones from architecture files (with the
    given size overrides) and registry names, trained ones from retrain checkpoints."""
    if not (arch or ckpt or network):
        raise ValueError("nothing to run: give --arch X.json, --ckpt X.ckpt or --network NAME")
    nets = {Path(a).stem: build_segmentation_network(a, None, num_classes, fch, output_stride) for a in arch}
    for path in ckpt:
        net, meta = load_segmentation_network(path)
        nets[f"{meta['name']} ({Path(path).name})"] = net
    nets.update({n: build_segmentation_network(None, n, num_classes) for n in network})
    return nets
