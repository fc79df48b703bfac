"""A/B statistics from sufficient statistics, checked against scipy on reference data, and the
false-positive rate of the sequential test under continuous monitoring."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from artisan_operator.policy.statistics import (
    SufficientStats,
    adjust,
    mixing_variance,
    msprt,
    msprt_log_e_value,
    sample_ratio_p_value,
    two_proportion_z_test,
    welch_t_test,
)

RNG = np.random.default_rng(42)
A = RNG.normal(3.5, 1.0, 400)
B = RNG.normal(3.7, 1.4, 350)


def test_sufficient_stats_match_numpy() -> None:
    s = SufficientStats.of(A)
    assert s.n == 400
    assert s.mean == pytest.approx(A.mean())
    assert s.variance == pytest.approx(A.var(ddof=1))


def test_welch_matches_scipy() -> None:
    result = welch_t_test(SufficientStats.of(A), SufficientStats.of(B), alpha=0.05)
    reference = stats.ttest_ind(B, A, equal_var=False)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    ci = reference.confidence_interval(0.95)
    assert result.ci_lower == pytest.approx(ci.low, rel=1e-9)
    assert result.ci_upper == pytest.approx(ci.high, rel=1e-9)
    assert result.difference == pytest.approx(B.mean() - A.mean())


def test_two_proportion_z_matches_scipy_chi_square() -> None:
    control = np.r_[np.ones(420), np.zeros(580)]
    treatment = np.r_[np.ones(470), np.zeros(530)]
    result = two_proportion_z_test(SufficientStats.of(control), SufficientStats.of(treatment), alpha=0.05)
    # The pooled z-test is the 2x2 chi-square test without continuity correction (z² = χ²).
    table = [[420, 580], [470, 530]]
    chi2 = stats.chi2_contingency(table, correction=False)
    assert result.p_value == pytest.approx(chi2.pvalue, rel=1e-9)
    assert result.difference == pytest.approx(0.05)
    half = stats.norm.ppf(0.975) * np.sqrt(0.42 * 0.58 / 1000 + 0.47 * 0.53 / 1000)
    assert result.ci_upper - result.difference == pytest.approx(half)


def test_srm_matches_scipy_chisquare() -> None:
    counts, weights = [5050, 3900, 1050], [50, 40, 10]
    assert sample_ratio_p_value(counts, weights) == pytest.approx(
        stats.chisquare(counts, [5000, 4000, 1000]).pvalue
    )
    assert sample_ratio_p_value([5000, 4000, 1000], weights) == pytest.approx(1.0)
    assert sample_ratio_p_value([5500, 4500, 0], [50, 50, 0]) < 1e-20
    assert sample_ratio_p_value([10, 10, 3], [50, 50, 0]) == 0.0


def test_holm_matches_reference_and_bonferroni_is_more_conservative() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm by hand: sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 with running max.
    assert adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust(p, "none") == p


def test_msprt_e_value_matches_the_closed_form_by_numerical_integration() -> None:
    control, treatment = SufficientStats.of(A[:200]), SufficientStats.of(B[:200])
    result = msprt(control, treatment, alpha=0.05, is_rate=False)
    v = control.variance / 200 + treatment.variance / 200
    pooled = (control.variance + treatment.variance) / 2
    tau = np.sqrt(float(mixing_variance(pooled)))
    d = result.difference
    grid = np.linspace(-10 * tau, 10 * tau, 200_001)
    ratio = stats.norm.pdf(d, loc=grid, scale=np.sqrt(v)) / stats.norm.pdf(d, 0, np.sqrt(v))
    integral = np.trapezoid(ratio * stats.norm.pdf(grid, 0, tau), grid)
    assert result.e_value == pytest.approx(integral, rel=1e-6)
    assert result.p_value == pytest.approx(min(1.0, 1 / integral))


def test_confidence_sequence_excludes_zero_exactly_when_the_test_rejects() -> None:
    for n in (50, 200, 800):
        r = msprt(SufficientStats.of(A[:n]), SufficientStats.of(B[:n] + 0.3), alpha=0.05, is_rate=False)
        rejects = r.e_value is not None and r.e_value >= 20
        assert rejects == (r.ci_lower > 0 or r.ci_upper < 0)


def _simulate(
    looks: int = 30, experiments: int = 2000, n: int = 600, alpha: float = 0.05
) -> tuple[float, float]:
    """Share of A/A experiments declared significant at any of `looks` checks: sequential vs naive."""
    rng = np.random.default_rng(7)
    a = rng.normal(3.0, 1.0, (experiments, n))
    b = rng.normal(3.0, 1.0, (experiments, n))
    at = np.linspace(n // looks, n, looks).astype(int)

    def cumulative(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.cumsum(x, axis=1)[:, at - 1], np.cumsum(x**2, axis=1)[:, at - 1]

    (sa, qa), (sb, qb) = cumulative(a), cumulative(b)
    m = at[None, :]
    va, vb = (qa - sa**2 / m) / (m - 1), (qb - sb**2 / m) / (m - 1)
    variance = va / m + vb / m
    difference = sb / m - sa / m
    log_e = msprt_log_e_value(difference, variance, mixing_variance((va + vb) / 2))
    sequential = float((log_e >= np.log(1 / alpha)).any(axis=1).mean())
    naive_p = 2 * stats.norm.sf(np.abs(difference) / np.sqrt(variance))
    naive = float((naive_p < alpha).any(axis=1).mean())
    return sequential, naive


def test_sequential_false_positive_rate_stays_below_alpha_with_30_looks() -> None:
    sequential, naive = _simulate()
    assert sequential <= 0.05
    # The naive fixed-horizon test checked 30 times is wrong far more often (about 29%).
    assert 0.2 < naive < 0.36


def test_sequential_test_detects_a_real_effect() -> None:
    control = SufficientStats.of(RNG.normal(3.0, 1.0, 500))
    treatment = SufficientStats.of(RNG.normal(3.4, 1.0, 500))
    result = msprt(control, treatment, alpha=0.05, is_rate=False)
    assert result.e_value is not None
    assert result.e_value > 20
    assert result.ci_lower > 0


def test_rates_use_the_binomial_variance() -> None:
    control = SufficientStats.of(np.r_[np.ones(300), np.zeros(700)])
    treatment = SufficientStats.of(np.r_[np.ones(400), np.zeros(600)])
    result = msprt(control, treatment, alpha=0.05, is_rate=True)
    v = 0.3 * 0.7 / 1000 + 0.4 * 0.6 / 1000
    tau2 = float(mixing_variance(0.35 * 0.65))
    assert np.log(result.e_value) == pytest.approx(float(msprt_log_e_value(0.1, v, tau2)))


def test_constant_samples_do_not_crash() -> None:
    same = SufficientStats.of([1.0] * 10)
    assert welch_t_test(same, same, 0.05).p_value == 1.0
    assert msprt(same, same, 0.05, is_rate=False).p_value == 1.0
    other = SufficientStats.of([2.0] * 10)
    assert welch_t_test(same, other, 0.05).p_value == 0.0
