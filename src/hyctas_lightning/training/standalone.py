"""Standalone references of the ranking diagnosis: panel members trained alone, from scratch, under one short
:class:`~hyctas_lightning.ranking.StandaloneRecipe` with :class:`SegmentationModule`, resumable and cached in a
:class:`~hyctas_lightning.ranking.ReferenceCache`."""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from typing import Any, Dict, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from hyctas_lightning.data.registry import build_datamodule
from hyctas_lightning.ranking import RankingReport, ReferenceCache, load_references
from hyctas_lightning.search_space import Architecture

from .deadline import Deadline
from .segmentation import SegmentationModule


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


def train_references(report: RankingReport, cache: ReferenceCache, accelerator: str = "auto") -> None:
    """Train alone every random panel member of ``report`` that has no reference yet, into ``cache``, and add the
    cache's results to the report.

    Args:
        report: the diagnosis (``ranking.diagnose``).
        cache: where the results and the resumable training runs live.
        accelerator: Lightning accelerator of the trainings.
    """
    for name in report.unreferenced():
        train_standalone(report.panel[name], cache, accelerator=accelerator)
    report.add_references(load_references(cache.dir))


__all__ = ["train_references", "train_standalone"]
