"""The ranking diagnosis during supernet training, as a Lightning callback."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from .diagnosis import RankingReport, references_for
from .references import load_references


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
