"""The statistics of experiment results, from scipy and statsmodels, on counts and sums.

Rates (a contact converted or not): the Wilson interval of each arm's rate; the two-proportion
z-test with pooled variance (statsmodels `proportions_ztest`); Newcombe's interval for the
difference and the log-adjusted interval for the ratio (`confint_proportions_2indep`).
Means (revenue per contact): Welch's t-test from each arm's mean, standard deviation and size
(scipy `ttest_ind_from_stats`) and its interval for the difference with the Welch–Satterthwaite
degrees of freedom, as scipy's `ttest_ind(..., equal_var=False).confidence_interval()` gives it
from the raw values. Multiple comparisons: Benjamini–Hochberg (statsmodels `multipletests`).
Sample size: the normal power of a two-sided test (statsmodels `NormalIndPower` on Cohen's h for
rates, `TTestIndPower` on Cohen's d for means).

scipy and statsmodels (which brings pandas) are imported by each function when first used: the
experiment admin imports this module in every process, and at the top they cost every web and task
worker a second and ~40 MB at start-up (as in predictions/__init__.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

ALPHA = 0.05
POWER = 0.8


@dataclass(frozen=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None


NONE = Interval(None, None, None)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def rate(successes: int, n: int, *, alpha: float = ALPHA) -> Interval:
    """The share with its Wilson interval."""
    if n <= 0:
        return NONE
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return Interval(successes / n, float(low), float(high))


@dataclass(frozen=True)
class Difference:
    """Treatment minus baseline: absolute (and relative, treatment/baseline - 1) with intervals."""

    absolute: Interval
    relative: Interval
    p_value: float | None
    test: str


NO_TEST = Difference(NONE, NONE, None, "")


def compare_rates(c1: int, n1: int, c0: int, n0: int, *, alpha: float = ALPHA) -> Difference:
    """Arm 1 (treatment) against arm 0 (baseline)."""
    if n1 <= 0 or n0 <= 0:
        return NO_TEST
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    p1, p0 = c1 / n1, c0 / n0
    low, high = confint_proportions_2indep(c1, n1, c0, n0, method="newcomb", compare="diff", alpha=alpha)
    absolute = Interval(p1 - p0, _finite(low), _finite(high))
    if c1 + c0 in (0, n1 + n0):  # everyone or no one converted: no variance to test against
        return Difference(absolute, NONE, None, "z-test (not possible: every contact had the same outcome)")
    _z, p_value = proportions_ztest([c1, c0], [n1, n0])
    relative = NONE
    if c0 > 0:
        rlow, rhigh = confint_proportions_2indep(c1, n1, c0, n0, method="log-adjusted", compare="ratio", alpha=alpha)
        relative = Interval(p1 / p0 - 1, _finite(rlow - 1), _finite(rhigh - 1))
    return Difference(absolute, relative, float(p_value), "two-proportion z-test")


@dataclass(frozen=True)
class Moments:
    """n values summarised by their sum and sum of squares (exact decimals from the database)."""

    n: int
    total: Decimal
    squares: Decimal

    @property
    def mean(self) -> float | None:
        return float(self.total / self.n) if self.n else None

    @property
    def variance(self) -> float | None:
        """Sample variance (n - 1 in the denominator), computed in decimals so nothing cancels."""
        if self.n < 2:
            return None
        return float(max(Decimal(0), (self.squares - self.total * self.total / self.n) / (self.n - 1)))


NO_MOMENTS = Moments(0, Decimal(0), Decimal(0))


def mean(m: Moments, *, alpha: float = ALPHA) -> Interval:
    """The mean with its t interval."""
    if m.n == 0:
        return NONE
    center, variance = m.mean, m.variance
    if center is None or variance is None:  # one value: no spread to measure
        return Interval(center, None, None)
    from scipy import stats

    half = stats.t.ppf(1 - alpha / 2, m.n - 1) * math.sqrt(variance / m.n)
    return Interval(center, center - half, center + half)


def compare_means(m1: Moments, m0: Moments, *, alpha: float = ALPHA) -> Difference:
    """Welch's t-test of arm 1 against arm 0, with the Welch interval of the difference."""
    mean1, mean0, var1, var0 = m1.mean, m0.mean, m1.variance, m0.variance
    if mean1 is None or mean0 is None or var1 is None or var0 is None:  # fewer than two values in an arm
        return NO_TEST
    v1, v0 = var1 / m1.n, var0 / m0.n
    diff = mean1 - mean0
    if v1 + v0 == 0:
        return Difference(Interval(diff, None, None), NONE, None, "Welch's t-test (not possible: no spread)")
    from scipy import stats

    result = stats.ttest_ind_from_stats(mean1, math.sqrt(var1), m1.n, mean0, math.sqrt(var0), m0.n, equal_var=False)
    df = (v1 + v0) ** 2 / (v1**2 / (m1.n - 1) + v0**2 / (m0.n - 1))
    half = stats.t.ppf(1 - alpha / 2, df) * math.sqrt(v1 + v0)
    relative = NONE
    if mean0:
        relative = Interval(diff / mean0, (diff - half) / mean0, (diff + half) / mean0)
        if mean0 < 0:
            relative = Interval(relative.value, relative.high, relative.low)
    return Difference(Interval(diff, diff - half, diff + half), relative, float(result.pvalue), "Welch's t-test")


def adjust(p_values: list[float | None], *, alpha: float = ALPHA) -> list[float | None]:
    """Benjamini–Hochberg adjusted p-values; None (no test) stays None and is not counted."""
    present = [p for p in p_values if p is not None]
    if not present:
        return list(p_values)
    from statsmodels.stats.multitest import multipletests

    _reject, adjusted, _s, _b = multipletests(np.array(present), alpha=alpha, method="fdr_bh")
    it = iter(float(p) for p in adjusted)
    return [None if p is None else next(it) for p in p_values]


def sample_size_rates(baseline: float, effect: float, *, ratio: float, alpha: float = ALPHA, power: float = POWER):
    """Contacts needed in (treatment, baseline) arms to detect baseline -> baseline + effect.

    `ratio` is baseline arm size / treatment arm size. None when baseline + effect is not a rate.
    """
    target = baseline + effect
    if not (0 < baseline < 1 and 0 < target < 1):
        return None
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    h = proportion_effectsize(target, baseline)
    n1 = NormalIndPower().solve_power(effect_size=h, alpha=alpha, power=power, ratio=ratio, alternative="two-sided")
    return math.ceil(n1), math.ceil(n1 * ratio)


def sample_size_means(sd: float, effect: float, *, ratio: float, alpha: float = ALPHA, power: float = POWER):
    """Contacts needed in (treatment, baseline) arms to detect a difference of `effect` in means."""
    if not sd or sd <= 0 or effect <= 0:
        return None
    from statsmodels.stats.power import TTestIndPower

    n1 = TTestIndPower().solve_power(
        effect_size=effect / sd, alpha=alpha, power=power, ratio=ratio, alternative="two-sided"
    )
    return math.ceil(n1), math.ceil(n1 * ratio)
