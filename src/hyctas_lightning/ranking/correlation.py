"""How well one ranking predicts another: Kendall's tau and Spearman's rho with bootstrap confidence intervals.

The question a supernet must answer is whether architectures it scores higher also train to higher accuracy on
their own (paper section 4.5 reports Kendall tau = 0.51). With a dozen retrained networks a point estimate alone
says little, so each coefficient comes with a percentile bootstrap interval over the (estimate, outcome) pairs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence, Tuple

import numpy as np
from scipy.stats import kendalltau, spearmanr


@dataclass(frozen=True)
class RankCorrelation:
    """Rank agreement of paired values.

    Args:
        n: number of pairs.
        kendall_tau: Kendall's tau-b (ties handled).
        kendall_p: two-sided p-value of tau under no association.
        kendall_ci: bootstrap confidence interval of tau.
        spearman_rho: Spearman's rank correlation.
        spearman_p: two-sided p-value of rho under no association.
        spearman_ci: bootstrap confidence interval of rho.
        confidence: level of both intervals.
        bootstrap: resamples in the intervals (a resample with a constant side has no ranking and is left out).
    """

    n: int
    kendall_tau: float
    kendall_p: float
    kendall_ci: Tuple[float, float]
    spearman_rho: float
    spearman_p: float
    spearman_ci: Tuple[float, float]
    confidence: float
    bootstrap: int

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> RankCorrelation:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def kendall(estimates: Sequence[float], outcomes: Sequence[float]) -> Tuple[float, float]:
    """Kendall's tau-b between two paired sequences and its two-sided p-value; both NaN with fewer than two pairs
    or a constant side (which ranks nothing).

    Args:
        estimates: the predicted scores.
        outcomes: the measured scores of the same items, in the same order.
    """
    if len(estimates) < 2 or len(set(estimates)) < 2 or len(set(outcomes)) < 2:
        return math.nan, math.nan
    tau, p = kendalltau(estimates, outcomes)
    return float(tau), float(p)


def kendall_tau(estimates: Sequence[float], outcomes: Sequence[float]) -> float:
    """Kendall's tau-b between two paired sequences; NaN with fewer than two pairs or a constant side.

    Args:
        estimates: the predicted scores.
        outcomes: the measured scores of the same items, in the same order.
    """
    return kendall(estimates, outcomes)[0]


def _interval(values: np.ndarray, confidence: float) -> Tuple[float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (math.nan, math.nan)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def rank_correlation(estimates: Sequence[float], outcomes: Sequence[float], bootstrap: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> RankCorrelation:
    """Kendall tau and Spearman rho between ``estimates`` and ``outcomes`` (paired, same order), each with a
    percentile bootstrap interval from ``bootstrap`` resamples of the pairs. A constant side has no ranking: every
    coefficient and interval is then NaN.

    Args:
        estimates: the predicted scores, e.g. a supernet's mIoU of each architecture.
        outcomes: the measured scores of the same items, e.g. their mIoU after retraining (mean over seeds).
        bootstrap: resamples of the pairs (with replacement) for the intervals; 0 skips them (NaN intervals).
        seed: seed of the resampling, so a report regenerates the same intervals.
        confidence: level of the intervals, in (0, 1).
    """
    x, y = np.asarray(estimates, dtype=float), np.asarray(outcomes, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"rank_correlation: estimates and outcomes must be paired 1-D sequences, got {x.shape} "
                         f"and {y.shape}")
    if x.size < 3:
        raise ValueError(f"rank_correlation: needs at least 3 pairs, got {x.size}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("rank_correlation: estimates and outcomes must not hold NaN (an unmeasured item?)")
    if not 0 < confidence < 1:
        raise ValueError(f"rank_correlation: confidence must be in (0, 1), got {confidence}")
    if np.ptp(x) == 0 or np.ptp(y) == 0:  # a constant side (e.g. one prediction for every input) ranks nothing
        nan2 = (math.nan, math.nan)
        return RankCorrelation(int(x.size), math.nan, math.nan, nan2, math.nan, math.nan, nan2, confidence, 0)
    tau, tau_p = kendall(x.tolist(), y.tolist())
    rho, rho_p = spearmanr(x, y)
    rng = np.random.default_rng(seed)
    taus, rhos = np.full(bootstrap, np.nan), np.full(bootstrap, np.nan)
    for i in range(bootstrap):
        pick = rng.integers(0, x.size, x.size)
        a, b = x[pick], y[pick]
        if np.ptp(a) > 0 and np.ptp(b) > 0:  # a constant side has no ranking
            taus[i], rhos[i] = kendall_tau(a.tolist(), b.tolist()), spearmanr(a, b)[0]
    counted = int((~np.isnan(taus)).sum())
    return RankCorrelation(int(x.size), tau, tau_p, _interval(taus, confidence), float(rho),
                           float(rho_p), _interval(rhos, confidence), confidence, counted)
