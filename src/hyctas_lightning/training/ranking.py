"""Does the supernet rank? Its estimates against the same architectures trained alone (paper section 4.5,
'Correlation Analysis': Kendall's tau 0.51 over 30 sub-networks).

A fixed, seeded *panel* of sub-networks (the largest, the smallest and random ones spread over 1, 2 and 3
branches) is estimated through the supernet (BN recalibrated on training images, mIoU on validation images:
:class:`~hyctas_lightning.evaluation.weight_sharing.SubnetScorer`) and trained alone under one short, fixed
:class:`StandaloneRecipe` with :class:`SegmentationModule`. Kendall's tau and Spearman's rho between the two say
how far a search through this supernet can be trusted. Standalone results are cached on disk, keyed by
architecture hash, recipe and data, so the check is cheap to repeat against every new supernet.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from hyctas_lightning.data.registry import LOADER_ONLY, build_datamodule
from hyctas_lightning.evaluation.correlation import RankCorrelation, rank_correlation
from hyctas_lightning.evaluation.weight_sharing import SubnetScorer, collect_images
from hyctas_lightning.search_space import Architecture, SearchSpace

from .deadline import Deadline
from .segmentation import SegmentationModule

log = logging.getLogger(__name__)


def ranking_panel(space: SearchSpace, random_members: int = 12, seed: int = 0) -> Dict[str, Architecture]:
    """``largest``, ``smallest`` and ``random0..`` (member ``i`` has ``1 + i % 3`` branches), distinct, drawn
    from ``seed`` alone: the same panel for every supernet of the space, so estimates can be compared.

    Args:
        space: the supernet's search space.
        random_members: random sub-networks in the panel.
        seed: seed of the draws.
    """
    rng = random.Random(seed)
    panel = {"largest": space.largest(), "smallest": space.smallest()}
    seen = {a.hash for a in panel.values()}
    for i in range(random_members):
        arch = space.sample(rng, branches=1 + i % 3)
        while arch.hash in seen:
            arch = space.sample(rng, branches=1 + i % 3)
        seen.add(arch.hash)
        panel[f"random{i}"] = arch
    return panel


@dataclass(frozen=True)
class StandaloneRecipe:
    """One short, fixed training of a panel member alone, from scratch, with ``SegmentationModule``. The defaults
    are the CamVid retraining recipe (``configs/camvid/retrain.yaml``): SGD momentum 0.9, poly learning rate from
    0.05, weight decay 5e-4, plain cross-entropy, no warm-up, clipping or auxiliary heads. (Gradient clipping at
    1.0 with bootstrapped cross-entropy left the synthetic references at half the mIoU the same networks reach
    without them in the same number of steps, which ranks how fast networks start, not where they go.)

    Args:
        steps: optimiser steps.
        batch_size: images per step (None: the data module's).
        lr: peak learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        warmup_iters: linear warm-up steps.
        bootstrap_ratio: hardest fraction of pixels in the loss (None: plain cross-entropy).
        aux_weight: weight of auxiliary heads (0: none).
        gradient_clip: gradient norm clipping (None: off).
        precision: Lightning precision (``32-true``, ``bf16-mixed``, ...).
        seed: seed of initialisation and data order.
        checkpoint_every: steps between the checkpoints an interrupted training resumes from (not part of the
            recipe's identity).
    """

    steps: int = 300
    batch_size: Optional[int] = None
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 0
    bootstrap_ratio: Optional[float] = None
    aux_weight: float = 0.0
    gradient_clip: Optional[float] = None
    precision: str = "32-true"
    seed: int = 0
    checkpoint_every: int = 100

    def identity(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "checkpoint_every"}


def data_identity(spec: Dict[str, Any]) -> Dict[str, Any]:
    """What in a data spec changes the result of training (not worker counts or memory pinning)."""
    args = {k: v for k, v in spec.get("init_args", {}).items() if k not in LOADER_ONLY and not k.startswith("_")}
    return {"class_path": spec["class_path"], "init_args": args}


class ReferenceCache:
    """Standalone results of one recipe on one data set: ``ROOT/references/KEY/HASH.json`` (plus the training
    run folder ``KEY/HASH/`` an interrupted training resumes from), KEY hashing recipe and data identity.

    Args:
        root: folder of the cache.
        recipe: the standalone recipe.
        data_spec: ``class_path``/``init_args`` of the data module (a supernet checkpoint's ``hyctas.data``).
    """

    def __init__(self, root: str | Path, recipe: StandaloneRecipe, data_spec: Dict[str, Any]) -> None:
        self.recipe = recipe
        self.data_spec = data_spec
        identity = {"recipe": recipe.identity(), "data": data_identity(data_spec)}
        self.key = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
        self.dir = Path(root) / "references" / self.key
        self.identity = identity

    def path(self, arch: Architecture) -> Path:
        return self.dir / f"{arch.hash}.json"

    def get(self, arch: Architecture) -> Optional[Dict[str, Any]]:
        path = self.path(arch)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, arch: Architecture, result: Dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "identity.json").write_text(json.dumps(self.identity, indent=1, default=str) + "\n")
        tmp = self.path(arch).with_suffix(".tmp")
        tmp.write_text(json.dumps({**result, "arch": arch.to_dict()}, indent=1) + "\n")
        tmp.replace(self.path(arch))  # atomic: concurrent readers never see half a file

    def run_dir(self, arch: Architecture) -> Path:
        return self.dir / arch.hash


def load_references(folder: str | Path) -> Dict[str, float]:
    """``{architecture hash: standalone mIoU}`` of every finished result in a reference folder (none while it
    does not exist yet); a file that is not a JSON object raises ``ValueError`` naming it."""
    results = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            entry = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not a JSON reference result ({error}); a reference folder holds HASH.json "
                             f"files with 'miou': remove or restore this one") from None
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: not a reference result (a JSON object with 'miou'); remove it from the "
                             f"reference folder")
        if "miou" in entry:
            results[path.stem] = float(entry["miou"])
    return results


def train_standalone(arch: Architecture, cache: ReferenceCache, max_time_s: Optional[float] = None,
                     accelerator: str = "auto") -> Optional[Dict[str, Any]]:
    """Train ``arch`` alone under the cache's recipe and data, unless cached; returns its result, or None when
    ``max_time_s`` ran out first (rerun to resume from the last checkpoint).

    Args:
        arch: the architecture (trained at its own ``fch``, output stride 8, as the supernet runs it).
        cache: where the result and the resumable training run live.
        max_time_s: stop after this many seconds of training (None: no limit).
        accelerator: Lightning accelerator.
    """
    done = cache.get(arch)
    if done is not None:
        return done
    recipe = cache.recipe
    overrides = {"batch_size": recipe.batch_size} if recipe.batch_size else {}
    data = build_datamodule(cache.data_spec, **overrides)
    run = cache.run_dir(arch)
    last = run / "checkpoints" / "last.ckpt"
    L.seed_everything(recipe.seed, verbose=False)
    module = SegmentationModule(arch=arch.to_dict(), num_classes=data.num_classes, output_stride=8, lr=recipe.lr,
                                momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                                warmup_iters=recipe.warmup_iters, bootstrap_ratio=recipe.bootstrap_ratio,
                                aux_weight=recipe.aux_weight, drop_path_rate=0.0,
                                ignore_index=getattr(data, "ignore_index", 255))
    common = dict(accelerator=accelerator, devices=1, precision=recipe.precision, logger=False,
                  enable_progress_bar=False, enable_model_summary=False, default_root_dir=run)
    trainer = L.Trainer(max_steps=recipe.steps, max_epochs=-1, gradient_clip_val=recipe.gradient_clip,
                        limit_val_batches=0, num_sanity_val_steps=0, benchmark=torch.cuda.is_available(),
                        callbacks=[ModelCheckpoint(dirpath=run / "checkpoints", save_last=True, save_top_k=0,
                                                   every_n_train_steps=recipe.checkpoint_every),
                                   Deadline(max_time_s, str(last))], **common)
    start = time.perf_counter()
    trainer.fit(module, data, ckpt_path=str(last) if last.is_file() else None)
    if trainer.global_step < recipe.steps:
        return None
    seconds = time.perf_counter() - start
    metrics = L.Trainer(**common).validate(module, data, verbose=False)[0]
    result = {"miou": float(metrics["val/mIoU"]), "steps": trainer.global_step, "train_seconds": seconds,
              "recipe": asdict(recipe), "device": str(module.device)}
    cache.put(arch, result)
    shutil.rmtree(run / "checkpoints", ignore_errors=True)  # the result is the product; resuming is over
    rank_zero_info(f"standalone {arch.hash}: val mIoU {100 * result['miou']:.2f} after {recipe.steps} steps "
                   f"({seconds:.0f} s)")
    return result


def estimate_panel(supernet: nn.Module, panel: Dict[str, Architecture], datamodule: Any, num_classes: int,
                   ignore_index: int = 255, calibration_images: int = 64, val_images: Optional[int] = None,
                   seed: int = 0) -> Dict[str, float]:
    """Supernet mIoU of every panel member, each after BN recalibration on the same training images.

    Args:
        supernet: the trained weight-sharing network (on the device to run on).
        panel: ``{name: architecture}`` (see :func:`ranking_panel`).
        datamodule: data the supernet was trained on.
        num_classes: classes of the data.
        ignore_index: label the metric ignores.
        calibration_images: training images for BN recalibration.
        val_images: validation images (None: the whole split).
        seed: seed of the calibration images' draw.
    """
    calibration = collect_images(datamodule, "train", calibration_images, seed, with_masks=False)
    validation = collect_images(datamodule, "val", val_images, seed, with_masks=True)
    scorer = SubnetScorer(supernet, calibration, num_classes, ignore_index)
    return scorer.score_all(panel, validation, progress=lambda name, miou: log.info("%s: %.4f", name, miou))


MIN_PAIRS = 3  # fewer pairs than this have no ranking to test


def correlate(estimates: List[float], references: List[float], bootstrap: int = 1000) -> Optional[RankCorrelation]:
    """Rank correlation with bootstrap intervals, or None with fewer than three pairs (no ranking to test)."""
    return rank_correlation(estimates, references, bootstrap=bootstrap) if len(estimates) >= MIN_PAIRS else None


@dataclass
class RankingReport:
    """Supernet estimates and standalone references of one panel; correlations over its random members.

    Args:
        panel: ``{name: architecture}``.
        estimates: ``{name: supernet mIoU}``.
        references: ``{name: standalone mIoU}`` of the members trained so far.
        bootstrap: resamples behind the correlations' confidence intervals.
    """

    panel: Dict[str, Architecture]
    estimates: Dict[str, float]
    references: Dict[str, float] = field(default_factory=dict)
    bootstrap: int = 1000

    @property
    def random_names(self) -> List[str]:
        return [n for n in self.panel if n.startswith("random")]

    def correlated(self) -> List[str]:
        """Random members with both an estimate and a reference (the extremes would inflate tau)."""
        return [n for n in self.random_names if n in self.estimates and n in self.references]

    def summary(self) -> Dict[str, Any]:
        names = self.correlated()
        stats = correlate([self.estimates[n] for n in names], [self.references[n] for n in names], self.bootstrap)
        nan2 = [math.nan, math.nan]
        randoms = [self.estimates[n] for n in self.random_names if n in self.estimates]
        standalone = [self.references[n] for n in names]
        return {"random_mean": sum(randoms) / len(randoms) if randoms else math.nan,
                "random_min": min(randoms, default=math.nan), "random_max": max(randoms, default=math.nan),
                "largest": self.estimates.get("largest", math.nan),
                "smallest": self.estimates.get("smallest", math.nan),
                "standalone_mean": sum(standalone) / len(standalone) if standalone else math.nan,
                "kendall_tau": stats.kendall_tau if stats else math.nan,
                "kendall_ci": list(stats.kendall_ci) if stats else nan2,
                "spearman_rho": stats.spearman_rho if stats else math.nan,
                "spearman_ci": list(stats.spearman_ci) if stats else nan2, "n": len(names)}

    def table(self) -> str:
        """One row per member: branches, final strides, supernet and standalone mIoU (%), then the summary."""
        rows = [f"{'member':<9} {'branches':>8} {'strides':<10} {'supernet':>8} {'alone':>7}"]
        def percent(value: Optional[float]) -> str:
            return "-" if value is None else f"{100 * value:.2f}"

        for name, arch in self.panel.items():
            rows.append(f"{name:<9} {arch.num_branches:>8} {','.join(map(str, arch.end_scales)):<10} "
                        f"{percent(self.estimates.get(name)):>8} {percent(self.references.get(name)):>7}")
        s = self.summary()
        if s["n"] >= MIN_PAIRS:
            ranks = (f"Kendall tau {s['kendall_tau']:.3f}, Spearman rho {s['spearman_rho']:.3f} over {s['n']} random "
                     f"members")
        elif s["n"] == 0:
            ranks = "no references: Kendall tau and Spearman rho need standalone results of the random members"
        else:  # a correlation of so few pairs would mean nothing
            ranks = (f"{s['n']} random member(s) with a reference: too few for Kendall tau and Spearman rho "
                     f"({MIN_PAIRS} needed)")
        rows.append(f"random mean {100 * s['random_mean']:.2f} (min {100 * s['random_min']:.2f}, max "
                    f"{100 * s['random_max']:.2f}); {ranks}")
        return "\n".join(rows)

    def to_dict(self) -> Dict[str, Any]:
        return {"summary": self.summary(), "members": {
            name: {"hash": arch.hash, "branches": arch.num_branches, "end_scales": list(arch.end_scales),
                   "supernet_miou": self.estimates.get(name), "standalone_miou": self.references.get(name)}
            for name, arch in self.panel.items()}}


def references_for(panel: Dict[str, Architecture], references: Dict[str, float]) -> Dict[str, float]:
    """Panel names mapped to the standalone mIoU of their architecture hash, where one exists."""
    return {name: references[arch.hash] for name, arch in panel.items() if arch.hash in references}


def diagnose(supernet: nn.Module, data_spec: Dict[str, Any], panel: Dict[str, Architecture],
             ignore_index: int = 255, calibration_images: int = 64, val_images: Optional[int] = None,
             seed: int = 0, references: Optional[str | Path] = None, train: Optional[ReferenceCache] = None,
             accelerator: str = "auto") -> RankingReport:
    """The supernet diagnostic: estimates of ``panel`` through ``supernet`` against standalone references, read
    from a reference folder and/or trained (missing random members only) into the cache ``train``.

    Args:
        supernet: the trained weight-sharing network (on the device to run on).
        data_spec: ``class_path``/``init_args`` of the data it was trained on.
        panel: ``{name: architecture}`` (see :func:`ranking_panel`).
        ignore_index: label the metric ignores.
        calibration_images: training images for BN recalibration of each member.
        val_images: validation images (None: the whole split).
        seed: seed of the calibration images' draw.
        references: a reference folder (``ROOT/references/KEY``) to read standalone results from.
        train: a reference cache in which to train the random members that have no result yet.
        accelerator: Lightning accelerator of the standalone trainings.
    """
    found = load_references(references) if references is not None else {}  # a broken file stops us before the work
    estimates = estimate_panel(supernet, panel, build_datamodule(data_spec), supernet.num_classes, ignore_index,
                               calibration_images, val_images, seed)
    if train is not None:
        for name, arch in panel.items():
            if name.startswith("random") and arch.hash not in found:
                train_standalone(arch, train, accelerator=accelerator)
        found = {**load_references(train.dir), **found}
    return RankingReport(panel, estimates, references_for(panel, found))


class RankingCallback(L.Callback):
    """After each validation of a ``SupernetModule`` (which estimates its panel of sub-networks), log the rank
    correlation of those estimates with standalone references: ``rank/kendall_tau``, ``rank/spearman_rho`` and
    ``rank/n`` (random members with a reference).

    Args:
        references: a reference folder (``ROOT/references/KEY`` of :class:`ReferenceCache`); results that
            appear there while training runs are picked up at the next validation.
    """

    def __init__(self, references: str) -> None:
        self.references = Path(references)
        self.report: Optional[RankingReport] = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scores = getattr(pl_module, "val_scores", None)
        if not scores or trainer.sanity_checking:
            return
        panel = pl_module.val_archs
        self.report = RankingReport(panel, scores, references_for(panel, load_references(self.references)))
        summary = self.report.summary()
        metrics = {"rank/kendall_tau": summary["kendall_tau"], "rank/spearman_rho": summary["spearman_rho"],
                   "rank/n": float(summary["n"])}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        rank_zero_info(f"supernet ranking at step {trainer.global_step}:\n{self.report.table()}")


__all__ = ["RankingCallback", "RankingReport", "ReferenceCache", "StandaloneRecipe", "data_identity",
           "correlate", "diagnose", "estimate_panel", "load_references", "ranking_panel", "references_for",
           "train_standalone"]
