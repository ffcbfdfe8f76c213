"""Rank correlation of supernet estimates against retrained outcomes, with bootstrap intervals."""
import math

import numpy as np
import pytest

from hyctas_lightning.ranking.correlation import RankCorrelation, rank_correlation


def test_known_values_and_perfect_orders():
    r = rank_correlation([1, 2, 3, 4], [1, 3, 2, 4], bootstrap=0)
    assert r.n == 4 and math.isclose(r.kendall_tau, 4 / 6) and math.isclose(r.spearman_rho, 0.8)
    assert math.isnan(r.kendall_ci[0]) and r.bootstrap == 0
    up = rank_correlation(range(8), [v ** 2 for v in range(8)], bootstrap=200)
    assert up.kendall_tau == pytest.approx(1) and up.spearman_rho == pytest.approx(1)
    assert up.kendall_ci == pytest.approx((1, 1)) and up.spearman_ci == pytest.approx((1, 1))
    down = rank_correlation(range(8), [-v for v in range(8)], bootstrap=50)
    assert down.kendall_tau == pytest.approx(-1) and down.kendall_ci == pytest.approx((-1, -1))


def test_bootstrap_interval_is_seeded_and_brackets_a_noisy_estimate():
    rng = np.random.default_rng(1)
    estimates = rng.uniform(0.1, 0.2, 12)
    outcomes = 3 * estimates + rng.normal(0, 0.03, 12)  # related, with noise
    a = rank_correlation(estimates, outcomes, bootstrap=500, seed=7)
    b = rank_correlation(estimates, outcomes, bootstrap=500, seed=7)
    c = rank_correlation(estimates, outcomes, bootstrap=500, seed=8)
    assert a == b and a.kendall_ci != c.kendall_ci
    assert 0 < a.kendall_tau < 1 and a.kendall_ci[0] < a.kendall_tau < a.kendall_ci[1] <= 1
    assert a.spearman_ci[0] < a.spearman_rho < a.spearman_ci[1] and a.kendall_p < 0.05
    assert 450 < a.bootstrap <= 500
    assert RankCorrelation.from_dict(a.to_dict()) == a


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="paired"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 3"):
        rank_correlation([1, 2], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        rank_correlation([1, 2, float("nan")], [1, 2, 3])
    with pytest.raises(ValueError, match="confidence"):
        rank_correlation([1, 2, 3], [1, 2, 3], confidence=95)
