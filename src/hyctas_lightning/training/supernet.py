"""Supernet training (paper section 3.4 eq. 1, section 4.2): weight sharing, sub-networks drawn per step by a
registered sampler, optional distillation."""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional

import lightning as L
import torch
from torch import nn

from hyctas_lightning.checkpoints import SUPERNET_KIND, require_kind, supernet_metadata
from hyctas_lightning.data.registry import datamodule_spec
from hyctas_lightning.evaluation.batchnorm import bn_state, load_bn_state
from hyctas_lightning.evaluation.metrics import mean_iou, per_class_iou
from hyctas_lightning.evaluation.weight_sharing import SubnetScorer, collect_images
from hyctas_lightning.models import SuperNet, load_network, load_supernet
from hyctas_lightning.search_space import Architecture, SearchSpace, ranking_panel
from hyctas_lightning.search_space.architecture import estimate_training_memory_gb

from .ddp import log_global, one_gradient_sync, require_same_architectures
from .losses import distillation_loss, segmentation_loss
from .optim import prime_momentum
from .sampling import SAMPLERS, SandwichSampler, build_sampler

DISTILL_MODES = (None, "inplace", "teacher")


class SupernetModule(L.LightningModule):
    """Owns the SuperNet, its SearchSpace and the sampler of the sub-networks each step trains.

    Each training step runs the sub-networks of ``sampling`` (``sandwich``: largest + smallest + ``num_random``
    random; ``single``: one random, the paper's rule; ``fair``: one per op with the ops permuted per cell;
    ``progressive``: largest first, then widths, ops, everything), back-propagating each loss in turn so their
    gradients accumulate into one optimiser step (memory stays that of one sub-network).

    Validation estimates a fixed panel (largest, smallest, ``val_random`` random sub-networks over 1, 2, 3
    branches; see ``ranking_panel``) the way the search does: BN recalibrated per sub-network on
    ``calibration_images`` training images drawn once from ``val_seed``, mIoU on the validation split. It logs
    ``val/mIoU_<member>``, ``val/mIoU_random`` (the random members' mean, also ``val/mIoU``) and leaves the
    supernet's own statistics as they were. ``hyctas validate --ckpt_path`` on a supernet does the same.

    On several devices (``--trainer.devices N``) every process draws the same sub-networks (checked each step),
    their gradients are averaged in one all-reduce per optimiser step (``training.ddp``), all recalibrate on the
    same images and the validation metrics are summed over the processes: each logs the numbers one process would.

    Args:
        space: the search space (a ``SearchSpace`` or its dict form, as in YAML).
        num_classes: classes of the data.
        sampling: registered sampler name: ``sandwich``, ``single``, ``fair`` or ``progressive``.
        num_random: random sub-networks per step, for the samplers that take it (sandwich, progressive).
        sampler_args: further sampler options, e.g. ``{rotate_smallest: true}`` or ``{phases: [0.1, 0.25, 0.45]}``.
        distill: None; ``inplace`` (in-place distillation: the other sub-networks learn the largest one's soft
            predictions, BigNAS); ``teacher`` (every sub-network learns a fixed, separately trained network's).
        distill_weight: weight of the distillation loss; the cross-entropy gets ``1 - distill_weight``.
        distill_temperature: softmax temperature of distillation.
        teacher: retrain checkpoint of the teacher (``distill: teacher``).
        bootstrap_ratio: bootstrapped cross-entropy on the hardest fraction of pixels (None: plain).
        ignore_index: label ignored by loss and metric.
        val_random: random members of the validation panel (not stored in checkpoints, like the next two).
        val_seed: seed of the panel and of the calibration images.
        calibration_images: training images BN statistics are recalibrated on before each estimate.
        gradient_clip: clip the summed gradient of a step to this norm (None: off).
        scheduler_interval: step the learning-rate schedule every ``epoch`` (the paper's exponential decay) or
            every ``step`` (e.g. ``PolyWarmupLR`` with a warm-up).
        seed: seed of the per-step draws.
        channels_last: run the supernet channels-last (GPU: convolutions without layout conversions, fast
            resizing); the weights are the same and a checkpoint loads either way.
        complexity_lr: complexity-aware step sizes (``ComplexityScale``): at the end of the run the largest
            sub-network's loss weighs ``1 + complexity_lr`` times the smallest's (0: off).
    """

    checkpoint_kind = SUPERNET_KIND
    flops_per_batch = None  # read by Lightning's ThroughputMonitor where a config has it: sub-networks change

    def __init__(self, space: Optional[SearchSpace] = None, num_classes: int = 19, sampling: str = "sandwich",
                 num_random: int = 2, sampler_args: Optional[Dict[str, Any]] = None, distill: Optional[str] = None,
                 distill_weight: float = 1.0, distill_temperature: float = 1.0, teacher: Optional[str] = None,
                 bootstrap_ratio: Optional[float] = None, ignore_index: int = 255, val_random: int = 12,
                 val_seed: int = 0, calibration_images: int = 64, gradient_clip: Optional[float] = None,
                 scheduler_interval: str = "epoch", seed: int = 0, channels_last: bool = False,
                 complexity_lr: float = 0.0) -> None:
        super().__init__()
        space = SearchSpace.from_dict(space) if isinstance(space, dict) else (space or SearchSpace())
        # how validation estimates is chosen at evaluation, not stored: a checkpoint's hyper-parameters override
        # the command line when LightningCLI loads it
        self.save_hyperparameters(ignore=["space", "val_random", "val_seed", "calibration_images"])
        self.val_seed, self.calibration_images = val_seed, calibration_images
        self.hparams["space"] = space.to_dict()  # plain data, so checkpoints load without pickled classes
        check_options(self.hparams)
        self.automatic_optimization = False
        self.space = space
        self.supernet = SuperNet(space, num_classes)
        self.supernet.set_channels_last(channels_last)
        self.sampler = build_sampler(sampling, space, seed, **sampler_options(sampling, num_random, sampler_args))
        self.complexity = ComplexityScale(space, complexity_lr) if complexity_lr else None
        if distill == "inplace" and not self.sampler.leads_with_largest:
            raise ValueError(f"distill: 'inplace' learns from the largest sub-network, which sampling '{sampling}' "
                             f"does not train first; use sandwich or progressive, or fair with sampler_args "
                             f"{{with_largest: true}}")
        self.val_archs: Dict[str, Architecture] = ranking_panel(space, val_random, val_seed)
        self.val_iou = nn.ModuleDict({k: per_class_iou(num_classes, ignore_index) for k in self.val_archs})
        self.val_scores: Dict[str, float] = {}
        self._calibration: List[torch.Tensor] = []
        self._val_bn: Dict[str, Dict[str, torch.Tensor]] = {}
        self._teacher: Optional[nn.Module] = None

    def forward(self, images: torch.Tensor, arch: Architecture) -> torch.Tensor:
        return self.supernet(images, arch)

    # ------------------------------------------------------------------ training
    def on_train_start(self) -> None:
        for optimizer in self.trainer.optimizers:  # a fused SGD's momentum buffers, once a checkpoint's are restored
            prime_momentum(optimizer)

    def on_fit_start(self) -> None:
        steps = self.trainer.estimated_stepping_batches
        if steps != float("inf"):
            self.sampler.total_steps = int(steps)
        if self.hparams.distill == "teacher" and self._teacher is None:
            teacher = load_network(self.hparams.teacher)[0].to(self.device).eval().requires_grad_(False)
            # not a submodule: the fixed teacher is neither trained nor written into the supernet's checkpoints
            object.__setattr__(self, "_teacher", teacher)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images, target = batch["image"], batch["mask"]
        optimizer = self.optimizers()
        optimizer.zero_grad()
        draws = self.sampler.sample(self.global_step)
        require_same_architectures(self.global_step, draws)
        teacher = None
        if self._teacher is not None:
            with torch.no_grad():
                teacher = self._teacher(images)
        total, logs = 0.0, {}
        with one_gradient_sync(self):  # several processes: one all-reduce of the summed gradients, after the loop
            for name, arch in draws:
                logits = self(images, arch)
                loss = subnet_loss(self.hparams, logits, target, teacher)
                if self.hparams.distill == "inplace" and name == "largest":
                    teacher = logits.detach()
                scaled = loss  # logged: the loss as computed, back-propagated: scaled (no multiply-by-one when off)
                if self.complexity is not None:
                    logs[f"train/scale_{name}"] = self.complexity(arch, self.global_step, self.sampler.total_steps)
                    scaled = loss * logs[f"train/scale_{name}"]
                self.manual_backward(scaled)
                total += loss.detach()
                logs[f"train/loss_{name}"] = loss.detach()
                if name.startswith("random"):
                    logs[f"train/branches_{name}"] = float(arch.num_branches)
        if self.hparams.gradient_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        if self.hparams.scheduler_interval == "step":
            self._step_scheduler()
        size = images.shape[0]
        self.log_dict(logs, batch_size=size)
        self.log("loss", total, prog_bar=True, batch_size=size)
        self.log("train/lr", optimizer.param_groups[0]["lr"], batch_size=size)
        # per epoch too, averaged over the processes: a record even for epochs shorter than log_every_n_steps
        self.log("train/loss_epoch", total, on_step=False, on_epoch=True, sync_dist=True, batch_size=size)
        self.log_dict({f"b{k[-1]}": v for k, v in logs.items() if "branches" in k}, prog_bar=True, logger=False)
        return total

    def _step_scheduler(self) -> None:
        if (scheduler := self.lr_schedulers()) is not None:
            scheduler.step()

    def on_train_epoch_end(self) -> None:
        if self.hparams.scheduler_interval == "epoch":
            self._step_scheduler()

    # ------------------------------------------------------------------ validation
    def calibration_batches(self) -> List[torch.Tensor]:
        """Training images for BN recalibration, drawn once from the trainer's DataModule with ``val_seed``."""
        if not self._calibration:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is None:
                raise ValueError("supernet validation recalibrates BN on training images: pass a DataModule "
                                 "(hyctas fit/validate with data:), not bare dataloaders")
            self._calibration = [x.to(self.device) for x in collect_images(
                datamodule, "train", self.calibration_images, self.val_seed, with_masks=False)]
        return self._calibration

    def on_validation_epoch_start(self) -> None:
        """Recalibrate BN for every panel member once and keep its statistics (training's stay untouched)."""
        scorer = SubnetScorer(self.supernet, self.calibration_batches(), self.hparams.num_classes,
                              self.hparams.ignore_index)
        self._val_bn = {name: scorer.calibrated_state(arch) for name, arch in self.val_archs.items()}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        training_state = bn_state(self.supernet)
        for name, arch in self.val_archs.items():
            load_bn_state(self.supernet, self._val_bn[name])
            self.val_iou[name].update(self(batch["image"], arch).argmax(1), batch["mask"])
        load_bn_state(self.supernet, training_state)

    def on_validation_epoch_end(self) -> None:
        scores = {}
        for name, metric in self.val_iou.items():
            scores[name] = mean_iou(metric.compute())
            metric.reset()
        self.val_scores = {name: float(v) for name, v in scores.items()}
        randoms = [v for name, v in scores.items() if name.startswith("random")]
        # compute() summed the confusion matrices of every process
        log_global(self, {f"val/mIoU_{name}": v for name, v in scores.items() if name != "largest"})
        log_global(self, {"val/mIoU_largest": scores["largest"]}, prog_bar=True)
        if randoms:
            mean = torch.stack(randoms).mean()
            log_global(self, {"val/mIoU_random": mean})
            log_global(self, {"val/mIoU": mean}, prog_bar=True)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Everything the search needs travels in the checkpoint: space, data, classes, sampler."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        checkpoint["hyctas"] = supernet_metadata(self.space.to_dict(), data_metadata(dm, self.hparams.ignore_index),
                                                 self.hparams.num_classes, self.sampler.state_dict())

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        meta = require_kind(checkpoint, SUPERNET_KIND, "this checkpoint")
        state = dict(meta["sampler"])
        if state.pop("name", SandwichSampler.registered_name) != self.sampler.registered_name:
            raise ValueError(f"this checkpoint was trained with another sampler than sampling="
                             f"'{self.hparams.sampling}'")
        self.sampler.load_state_dict(state)


def subnet_loss(hp: Any, logits: torch.Tensor, target: torch.Tensor, teacher: Optional[torch.Tensor]) -> torch.Tensor:
    """One sub-network's loss: cross-entropy (bootstrapped if ``bootstrap_ratio``), mixed with the distillation of
    ``teacher``'s logits when there is a teacher.

    Args:
        hp: the ``SupernetModule``'s hyper-parameters.
        logits: the sub-network's logits.
        target: the labels.
        teacher: the teacher's logits (the largest sub-network's or a fixed network's), or None.
    """
    loss = segmentation_loss(logits, target, hp.ignore_index, hp.bootstrap_ratio)
    if teacher is None:
        return loss
    return (1 - hp.distill_weight) * loss + hp.distill_weight * distillation_loss(logits, teacher,
                                                                                  hp.distill_temperature)


def data_metadata(datamodule: Any, ignore_index: int) -> Optional[Dict[str, Any]]:
    """What a supernet checkpoint keeps of its data (None without a DataModule): how to rebuild it, the classes.

    Args:
        datamodule: the trainer's DataModule, or None.
        ignore_index: label ignored by loss and metric.
    """
    if datamodule is None:
        return None
    return {**datamodule_spec(datamodule), "classes": list(getattr(datamodule, "classes", [])),
            "ignore_index": ignore_index}


def check_options(hp: Any) -> None:
    """Refuse settings of a ``SupernetModule`` that cannot train, naming the field and the fix."""
    if hp.sampling not in SAMPLERS:
        raise ValueError(f"sampling: '{hp.sampling}' is not a registered sampler; choose one of "
                         f"{SAMPLERS.names()}")
    if hp.distill not in DISTILL_MODES:
        raise ValueError(f"distill: one of {list(DISTILL_MODES)}, got {hp.distill!r}")
    if (hp.distill == "teacher") != (hp.teacher is not None):
        raise ValueError("distill: 'teacher' needs teacher (a retrain checkpoint), and teacher needs "
                         "distill: teacher")
    if not 0 <= hp.distill_weight <= 1:
        raise ValueError(f"distill_weight: in [0, 1], got {hp.distill_weight}")
    if hp.scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval: 'epoch' or 'step', got {hp.scheduler_interval!r}")
    if hp.complexity_lr < 0:
        raise ValueError(f"complexity_lr: >= 0 (0: off), got {hp.complexity_lr}")


def sampler_options(sampling: str, num_random: int, sampler_args: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The sampler's constructor options: ``sampler_args``, and ``num_random`` for the samplers that take it."""
    options = dict(sampler_args or {})
    if "num_random" in inspect.signature(SAMPLERS.get(sampling)).parameters:
        options.setdefault("num_random", num_random)
    return options


class ComplexityScale:
    """Complexity-aware step sizes, after the complexity-aware learning rate of Jeon et al. ('Subnet-Aware Dynamic
    Supernet Training for Neural Architecture Search', CVPR 2025, arXiv 2503.10740): under one schedule for all,
    small sub-networks mature first and a short-trained supernet ranks them too high (the complexity bias DropNAS
    also reports), so large sub-networks should keep larger steps for longer. Each sub-network's loss is scaled by
    ``1 + strength * c * p``: ``c`` its complexity between the space's smallest (0) and largest (1), ``p`` the
    fraction of the run done; all steps are equal at the start, the largest's ``1 + strength`` times the
    smallest's at the end.

    Why loss weights rather than a learning rate or optimiser state per complexity group: a step's sub-networks
    accumulate into one optimiser step, and SGD with momentum is linear in the gradient, so scaling one
    sub-network's gradient is scaling its learning rate, with no second optimiser state to keep in step with the
    checkpoints (weight decay, applied once to the summed step, is left as it was). The complexity is the space's
    analytic size measure (``estimate_training_memory_gb``: channels x resolution x feature maps of every running
    cell), which costs microseconds per sub-network where counting multiply-adds would cost a forward pass.

    Args:
        space: the supernet's search space; its smallest and largest sub-networks bound the complexity.
        strength: how much larger the largest sub-network's step is than the smallest's at the end of the run.
    """

    def __init__(self, space: SearchSpace, strength: float) -> None:
        self.strength = strength
        self.low, self.high = (estimate_training_memory_gb(a) for a in (space.smallest(), space.largest()))

    def complexity(self, arch: Architecture) -> float:
        """``arch``'s size between the smallest sub-network (0) and the largest (1), clipped to [0, 1]."""
        size = (estimate_training_memory_gb(arch) - self.low) / max(self.high - self.low, 1e-12)
        return min(1.0, max(0.0, size))

    def __call__(self, arch: Architecture, step: int, total_steps: int) -> float:
        """The loss weight of ``arch`` at optimiser step ``step`` of ``total_steps``."""
        if total_steps <= 0:
            raise ValueError("complexity_lr needs the run's length: give trainer.max_steps or max_epochs")
        return 1.0 + self.strength * self.complexity(arch) * min(1.0, step / total_steps)


class WarmStart(L.Callback):
    """Start a supernet run from another supernet checkpoint's weights (the weights only: optimiser, schedule,
    step count and sampler start afresh): each part of a few-shot supernet (``sampling: split``; Zhao et al.,
    'Few-shot Neural Architecture Search', ICML 2021) starts from the one-shot supernet. The weights are loaded
    when fitting sets up, before Lightning restores a ``--ckpt_path``, so a part that resumes continues from its own
    checkpoint.

    Args:
        checkpoint: the supernet checkpoint to start from (same search space and classes as this run).
    """

    def __init__(self, checkpoint: str) -> None:
        self.checkpoint = checkpoint

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        supernet, meta = load_supernet(self.checkpoint)
        if SearchSpace.from_dict(meta["space"]) != pl_module.space or \
                meta["num_classes"] != pl_module.supernet.num_classes:
            raise ValueError(f"WarmStart checkpoint {self.checkpoint}: its search space or classes differ from this "
                             f"run's; start from a supernet of the same space (model.init_args.space) and data")
        pl_module.supernet.load_state_dict(supernet.state_dict())
