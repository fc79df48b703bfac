"""Statistics for A/B experiments, computed from sufficient statistics (count, sum, sum of squares).

The gateway exports, per variant and metric, three counters from which every test below is exact:
n, Σx and Σx². Rates (success, IFRA compliance) are means of 0/1 values, so the same counters serve.

- fixed horizon: Welch's t-test for means, the pooled two-proportion z-test for rates;
- sequential (default): the normal-mixture mSPRT (Johari, Pekelis and Walsh, "Always valid inference",
  2017; Robbins 1970). For the difference of means Δ̂ with variance V = s₁²/n₁ + s₂²/n₂ and a N(0, τ²)
  mixing distribution over the true difference, the mixture likelihood ratio is

      Λ = sqrt(V / (V + τ²)) · exp(τ² Δ̂² / (2 V (V + τ²)))

  Λ is an e-process under H₀ (Δ = 0): by Ville's inequality P(sup_t Λ_t ≥ 1/α) ≤ α, so the experiment
  may be checked after every sample and stopped at the first crossing with the false-positive rate
  still ≤ α. 1/Λ is an always-valid p-value; inverting the test gives a confidence sequence
  Δ̂ ± sqrt(V (V + τ²) / τ² · (2 log(1/α) + log((V + τ²) / V))).

  The mixing variance is τ² = (:data:`MIXING_EFFECT_SIZE` · σ)², σ the pooled standard deviation:
  the test is tuned to detect effects around a fifth of a standard deviation (a "small" effect in
  Cohen's terms), and is scale-free. A larger τ favours large effects, a smaller one small effects;
  validity does not depend on the choice.

Multiple treatments are compared with the control under Holm's step-down correction (or Bonferroni,
or none), and the sample ratio is checked with Pearson's chi-square test against the configured weights.
Every function takes numpy arrays too (the false-positive simulation in the tests is vectorized).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

MIXING_EFFECT_SIZE = 0.2
"""τ / σ of the mSPRT's normal mixing distribution (see the module docstring)."""

Correction = Literal["holm", "bonferroni", "none"]


def _stats() -> Any:
    """``scipy.stats``, imported on first use: it adds ~70 MB to the operator process, and only the
    A/B analysis needs it (an operator without ABExperiments never loads it)."""
    from scipy import stats

    return stats


@dataclass(frozen=True)
class SufficientStats:
    """n, Σx and Σx² of one metric for one variant."""

    n: int
    total: float
    total_squares: float

    @classmethod
    def of(cls, values: Sequence[float] | NDArray[np.float64]) -> SufficientStats:
        array = np.asarray(values, dtype=float)
        return cls(int(array.size), float(array.sum()), float((array**2).sum()))

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    @property
    def variance(self) -> float:
        """Unbiased sample variance (ddof=1), never negative despite rounding."""
        if self.n < 2:
            return float("nan")
        return max(0.0, (self.total_squares - self.total**2 / self.n) / (self.n - 1))


@dataclass(frozen=True)
class Comparison:
    """A treatment against the control: difference of means, its interval, and the evidence."""

    difference: float
    ci_lower: float
    ci_upper: float
    p_value: float
    """Unadjusted p-value (fixed) or always-valid p-value 1/e (sequential)."""
    e_value: float | None = None
    """The mixture likelihood ratio (sequential only)."""


def _variance_of_rate(stats_: SufficientStats) -> float:
    p = stats_.mean
    return p * (1.0 - p)


def welch_t_test(control: SufficientStats, treatment: SufficientStats, alpha: float) -> Comparison:
    """Welch's unequal-variance t-test of treatment − control, with a (1 − α) confidence interval."""
    v_c = control.variance / control.n
    v_t = treatment.variance / treatment.n
    se2 = v_c + v_t
    difference = treatment.mean - control.mean
    if se2 <= 0:
        return _degenerate(difference)
    df = se2**2 / (v_c**2 / (control.n - 1) + v_t**2 / (treatment.n - 1))
    se = float(np.sqrt(se2))
    t = difference / se
    p = float(2 * _stats().t.sf(abs(t), df))
    half = float(_stats().t.ppf(1 - alpha / 2, df)) * se
    return Comparison(difference, difference - half, difference + half, p)


def two_proportion_z_test(control: SufficientStats, treatment: SufficientStats, alpha: float) -> Comparison:
    """Pooled two-proportion z-test of treatment − control; Wald interval with unpooled variances."""
    difference = treatment.mean - control.mean
    pooled = (control.total + treatment.total) / (control.n + treatment.n)
    se_test = float(np.sqrt(pooled * (1 - pooled) * (1 / control.n + 1 / treatment.n)))
    if se_test <= 0:
        return _degenerate(difference)
    p = float(2 * _stats().norm.sf(abs(difference / se_test)))
    se = float(np.sqrt(_variance_of_rate(control) / control.n + _variance_of_rate(treatment) / treatment.n))
    half = float(_stats().norm.ppf(1 - alpha / 2)) * se
    return Comparison(difference, difference - half, difference + half, p)


def _degenerate(difference: float) -> Comparison:
    # No variance at all: identical constant samples give no evidence; different constants are certain.
    if difference == 0:
        return Comparison(0.0, 0.0, 0.0, 1.0, 1.0)
    return Comparison(difference, difference, difference, 0.0, float("inf"))


def msprt_log_e_value(difference: ArrayLike, variance: ArrayLike, tau2: ArrayLike) -> NDArray[np.float64]:
    """log Λ of the normal-mixture SPRT for an estimate with this variance (vectorized)."""
    d = np.asarray(difference, dtype=float)
    v = np.asarray(variance, dtype=float)
    t2 = np.asarray(tau2, dtype=float)
    result: NDArray[np.float64] = 0.5 * np.log(v / (v + t2)) + t2 * d**2 / (2 * v * (v + t2))
    return result


def msprt_half_width(variance: ArrayLike, tau2: ArrayLike, alpha: float) -> NDArray[np.float64]:
    """Half-width of the (1 − α) confidence sequence around the estimate (vectorized)."""
    v = np.asarray(variance, dtype=float)
    t2 = np.asarray(tau2, dtype=float)
    result: NDArray[np.float64] = np.sqrt(v * (v + t2) / t2 * (2 * np.log(1 / alpha) + np.log((v + t2) / v)))
    return result


def mixing_variance(pooled_variance: ArrayLike) -> NDArray[np.float64]:
    result: NDArray[np.float64] = (MIXING_EFFECT_SIZE**2) * np.asarray(pooled_variance, dtype=float)
    return result


def msprt(control: SufficientStats, treatment: SufficientStats, alpha: float, is_rate: bool) -> Comparison:
    """Sequential comparison: e-value, always-valid p-value and confidence sequence of treatment − control."""
    difference = treatment.mean - control.mean
    if is_rate:
        var_c, var_t = _variance_of_rate(control), _variance_of_rate(treatment)
        pooled_p = (control.total + treatment.total) / (control.n + treatment.n)
        pooled = pooled_p * (1 - pooled_p)
    else:
        var_c, var_t = control.variance, treatment.variance
        pooled = ((control.n - 1) * var_c + (treatment.n - 1) * var_t) / (control.n + treatment.n - 2)
    variance = var_c / control.n + var_t / treatment.n
    if variance <= 0 or pooled <= 0:
        return _degenerate(difference)
    tau2 = mixing_variance(pooled)
    log_e = float(msprt_log_e_value(difference, variance, tau2))
    e_value = float(np.exp(min(log_e, 700.0)))
    half = float(msprt_half_width(variance, tau2, alpha))
    return Comparison(difference, difference - half, difference + half, min(1.0, 1.0 / e_value), e_value)


def adjust(p_values: Sequence[float], correction: Correction) -> list[float]:
    """Family-wise adjusted p-values: Holm's step-down, Bonferroni, or unadjusted."""
    m = len(p_values)
    if correction == "none" or m == 0:
        return list(p_values)
    if correction == "bonferroni":
        return [min(1.0, p * m) for p in p_values]
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def sample_ratio_p_value(counts: Sequence[int], weights: Sequence[float]) -> float:
    """Pearson chi-square p-value of the observed counts against the configured weights.

    A variant with weight 0 that receives traffic is a mismatch by definition (p = 0).
    """
    if len(counts) != len(weights):
        raise ValueError("counts and weights must have the same length")
    total = sum(counts)
    if total == 0:
        return 1.0
    if any(w == 0 and c > 0 for c, w in zip(counts, weights, strict=True)):
        return 0.0
    observed = [c for c, w in zip(counts, weights, strict=True) if w > 0]
    live = [w for w in weights if w > 0]
    if len(observed) < 2:
        return 1.0
    expected = [total * w / sum(live) for w in live]
    return float(_stats().chisquare(observed, expected).pvalue)
