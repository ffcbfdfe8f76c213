"""A surrogate of standalone accuracy, for when weight sharing alone does not rank (NSGANetV2: Lu et al.,
'NSGANetV2: Evolutionary Multi-Objective Surrogate-Assisted Neural Architecture Search', ECCV 2020; MoSegNAS,
2022): a small model fitted on the architectures already trained alone predicts the mIoU of the others from what
is cheap to know of them, the supernet's estimate, multiply-adds, parameters and latency.

The model is ridge regression on standardised features (numpy; a few dozen references), judged by its
leave-one-out Kendall tau: each reference predicted by a model fitted on all the others, the predictions ranked
against the measured results. Costs enter as logarithms, so counting them at another resolution moves every
prediction alike and leaves the ranking as it was.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hyctas_lightning.evaluation import profile_architecture
from hyctas_lightning.search_space import Architecture

from .correlation import kendall_tau

# feature -> the measurement it is read from (the search evaluator's names; ``miou`` is the supernet's estimate)
FEATURES: Dict[str, str] = {"estimate": "miou", "macs": "macs_g", "params": "params_m", "latency": "latency_ms"}
DEFAULT_FEATURES = ("estimate", "macs", "params")
PROFILE_SIZE = (512, 1024)  # where the surrogate counts multiply-adds, the same for references and candidates
_PROFILES: Dict[str, Dict[str, float]] = {}


def profile_features(arch: Architecture) -> Dict[str, float]:
    """``macs_g`` and ``params_m`` of ``arch`` at ``PROFILE_SIZE`` (19 classes), counted once per architecture.

    Args:
        arch: the architecture.
    """
    if arch.hash not in _PROFILES:
        profile = profile_architecture(arch, PROFILE_SIZE)
        _PROFILES[arch.hash] = {"macs_g": profile.macs_g, "params_m": profile.params_m}
    return _PROFILES[arch.hash]


def feature_vector(measurements: Mapping[str, Optional[float]], features: Sequence[str]) -> Optional[List[float]]:
    """The model's inputs from measurements named as the search evaluator names them (``miou``: the supernet's
    estimate, ``macs_g``, ``params_m``, ``latency_ms``): the estimate as it is, the costs as logarithms; None if
    one is missing.

    Args:
        measurements: the architecture's measured values.
        features: names from ``FEATURES``.
    """
    values = [measurements.get(FEATURES[f]) for f in features]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return [float(v) if f == "estimate" else math.log(max(float(v), 1e-12)) for f, v in zip(features, values)]


def _fit(x: np.ndarray, y: np.ndarray, alpha: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge regression on features standardised by their mean and spread in ``x``; the intercept is not
    penalised. Returns mean, spread, coefficients and intercept."""
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    coef = np.linalg.solve(z.T @ z + alpha * np.eye(x.shape[1]), z.T @ (y - y.mean()))
    return mean, scale, coef, float(y.mean())


def loo_predictions(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Each row predicted by the model fitted on all the other rows (standardisation included).

    Args:
        x: features, one row per architecture.
        y: the measured results.
        alpha: ridge penalty.
    """
    out = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        mean, scale, coef, intercept = _fit(x[keep], y[keep], alpha)
        out[i] = intercept + ((x[i] - mean) / scale) @ coef
    return out


@dataclass(frozen=True)
class Surrogate:
    """A fitted surrogate: predicted standalone mIoU = intercept + coef . (features - mean) / scale.

    Args:
        features: the inputs, names from ``FEATURES``.
        mean: each input's mean over the references.
        scale: each input's spread over the references.
        coef: the ridge coefficients of the standardised inputs.
        intercept: the references' mean mIoU.
        alpha: the ridge penalty.
        n: references it was fitted on.
        loo_tau: Kendall tau of the leave-one-out predictions against the references' results.
    """

    features: Tuple[str, ...]
    mean: Tuple[float, ...]
    scale: Tuple[float, ...]
    coef: Tuple[float, ...]
    intercept: float
    alpha: float
    n: int
    loo_tau: float

    def predict(self, measurements: Mapping[str, Optional[float]]) -> Optional[float]:
        """Predicted standalone mIoU from an architecture's measurements (None if one the model needs is
        missing).

        Args:
            measurements: values named as the search evaluator names them (``miou``, ``macs_g``, ...).
        """
        x = feature_vector(measurements, self.features)
        if x is None:
            return None
        z = (np.asarray(x) - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(self.intercept + z @ np.asarray(self.coef))

    def to_dict(self) -> dict:
        return asdict(self)


def fit_surrogate(rows: Sequence[Mapping[str, Optional[float]]], targets: Sequence[float],
                  features: Sequence[str] = DEFAULT_FEATURES, alpha: float = 1.0,
                  loo_rows: Optional[Sequence[int]] = None) -> Surrogate:
    """Fit the surrogate on references: their measurements and the mIoU each reached trained alone.

    Args:
        rows: each reference's measurements (``miou``: the supernet's estimate, ``macs_g``, ``params_m``,
            ``latency_ms``).
        targets: each reference's standalone mIoU, in the same order.
        features: the inputs, names from ``FEATURES``.
        alpha: the ridge penalty on the standardised inputs.
        loo_rows: the rows whose leave-one-out predictions the Kendall tau ranks (default: all); e.g. the
            random panel members only, as the supernet's own tau leaves the extremes out.
    """
    unknown = [f for f in features if f not in FEATURES]
    if unknown or not features:
        raise ValueError(f"surrogate features: choose from {list(FEATURES)}, got {list(features)}")
    vectors = [feature_vector(r, features) for r in rows]
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        raise ValueError(f"surrogate: reference(s) {missing} lack a measurement of {list(features)}; drop the "
                         f"feature or measure it for every reference")
    if len(rows) != len(targets) or len(rows) < len(features) + 2:
        raise ValueError(f"surrogate: needs paired rows and targets, at least {len(features) + 2} of them for "
                         f"{len(features)} features; got {len(rows)} rows and {len(targets)} targets")
    x, y = np.asarray(vectors, dtype=float), np.asarray(targets, dtype=float)
    loo = loo_predictions(x, y, alpha)
    pick = list(range(len(y))) if loo_rows is None else list(loo_rows)
    mean, scale, coef, intercept = _fit(x, y, alpha)
    return Surrogate(tuple(features), tuple(mean.tolist()), tuple(scale.tolist()), tuple(coef.tolist()), intercept,
                     float(alpha), len(y), kendall_tau(loo[pick].tolist(), y[pick].tolist()))


__all__ = ["DEFAULT_FEATURES", "FEATURES", "PROFILE_SIZE", "Surrogate", "feature_vector", "fit_surrogate",
           "loo_predictions", "profile_features"]
