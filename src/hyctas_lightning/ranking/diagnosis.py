"""Does the supernet rank? Its estimates against the same architectures trained alone (paper section 4.5,
'Correlation Analysis': Kendall's tau 0.51 over 30 sub-networks).

A fixed, seeded panel of sub-networks (``search_space.ranking_panel``) is estimated through the supernet (BN
recalibrated on training images, mIoU on validation images: :class:`~hyctas_lightning.evaluation.weight_sharing.
SubnetScorer`) and compared with standalone references (``references``). Kendall's tau and Spearman's rho between
the two say how far a search through this supernet can be trusted.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from torch import nn

from hyctas_lightning.data.registry import build_datamodule
from hyctas_lightning.evaluation.weight_sharing import SubnetScorer, collect_images
from hyctas_lightning.search_space import Architecture

from .correlation import RankCorrelation, rank_correlation
from .finetune import Finetune, FinetuneScorer
from .references import load_references

log = logging.getLogger(__name__)
Folder = Union[str, Path]


def estimate_panel(supernet: nn.Module, panel: Dict[str, Architecture], datamodule: Any, num_classes: int,
                   ignore_index: int = 255, calibration_images: int = 64, val_images: Optional[int] = None,
                   seed: int = 0, finetune: Optional[Finetune] = None) -> Dict[str, float]:
    """Supernet mIoU of every panel member, each after BN recalibration on the same training images.

    Args:
        supernet: the trained weight-sharing network (on the device to run on).
        panel: ``{name: architecture}`` (see ``search_space.ranking_panel``).
        datamodule: data the supernet was trained on.
        num_classes: classes of the data.
        ignore_index: label the metric ignores.
        calibration_images: training images for BN recalibration.
        val_images: validation images (None: the whole split).
        seed: seed of the calibration images' draw.
        finetune: train each member briefly from its inherited weights before it is scored (:mod:`.finetune`), on
            training crops drawn with ``seed + 1``; None: the plain estimate.
    """
    calibration = collect_images(datamodule, "train", calibration_images, seed, with_masks=False)
    validation = collect_images(datamodule, "val", val_images, seed, with_masks=True)
    if finetune is None:
        scorer = SubnetScorer(supernet, calibration, num_classes, ignore_index)
    else:
        train = collect_images(datamodule, "train", finetune.images, seed + 1, with_masks=True)
        scorer = FinetuneScorer(supernet, train, calibration, num_classes, ignore_index, finetune)
    return scorer.score_all(panel, validation, progress=lambda name, miou: log.info("%s: %.4f", name, miou))


MIN_PAIRS = 3  # fewer pairs than this have no ranking to test


def correlate(estimates: List[float], references: List[float], bootstrap: int = 1000) -> Optional[RankCorrelation]:
    """Rank correlation with bootstrap intervals, or None with fewer than three pairs (no ranking to test).

    Args:
        estimates: supernet mIoU of each member.
        references: standalone mIoU of the same members.
        bootstrap: resamples behind the confidence intervals.
    """
    return rank_correlation(estimates, references, bootstrap=bootstrap) if len(estimates) >= MIN_PAIRS else None


def references_for(panel: Dict[str, Architecture], references: Dict[str, float]) -> Dict[str, float]:
    """Panel names mapped to the standalone mIoU of their architecture hash, where one exists.

    Args:
        panel: ``{name: architecture}``.
        references: ``{architecture hash: standalone mIoU}`` (``load_references``).
    """
    return {name: references[arch.hash] for name, arch in panel.items() if arch.hash in references}


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

    def unreferenced(self) -> List[str]:
        """Random members without a standalone reference yet."""
        return [n for n in self.random_names if n not in self.references]

    def add_references(self, results: Dict[str, float]) -> None:
        """Take standalone results (``load_references`` of a folder) for the members that have none yet."""
        self.references = {**references_for(self.panel, results), **self.references}

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


def diagnose(supernet: nn.Module, data_spec: Dict[str, Any], panel: Dict[str, Architecture],
             ignore_index: int = 255, calibration_images: int = 64, val_images: Optional[int] = None,
             seed: int = 0, references: Sequence[Folder] = (), finetune: Optional[Finetune] = None) -> RankingReport:
    """The supernet diagnostic: estimates of ``panel`` through ``supernet`` against the standalone references
    found in ``references`` (the first folder holding a member's result counts). Members still without one can
    be trained alone with ``training.standalone.train_references``.

    Args:
        supernet: the trained weight-sharing network (on the device to run on).
        data_spec: ``class_path``/``init_args`` of the data it was trained on.
        panel: ``{name: architecture}`` (see ``search_space.ranking_panel``).
        ignore_index: label the metric ignores.
        calibration_images: training images for BN recalibration of each member.
        val_images: validation images (None: the whole split).
        seed: seed of the calibration images' draw.
        references: reference folders (``ROOT/references/KEY``) to read standalone results from.
        finetune: the fine-tuned estimate's training (None: the plain estimate).
    """
    found = [load_references(folder) for folder in references]  # a broken file stops us before the work
    estimates = estimate_panel(supernet, panel, build_datamodule(data_spec), supernet.num_classes, ignore_index,
                               calibration_images, val_images, seed, finetune)
    report = RankingReport(panel, estimates)
    for results in found:
        report.add_references(results)
    return report
