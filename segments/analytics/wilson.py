"""Confidence intervals for the rates and the revenue per contact the analytics report."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None
    high: float | None

    def excludes(self, baseline: float | None) -> bool:
        """True when the interval lies wholly above or below the baseline value."""
        if baseline is None or self.low is None or self.high is None:
            return False
        return baseline < self.low or baseline > self.high

    def interval(self) -> tuple[float, float, float] | None:
        """(value, low, high); None for the estimate of no trials."""
        if self.value is None or self.low is None or self.high is None:
            return None
        return self.value, self.low, self.high


EMPTY = Estimate(None, None, None)


def wilson(successes: int, trials: int, *, z: float = Z95) -> Estimate:
    """The share successes/trials with its Wilson score interval (as statsmodels' method="wilson")."""
    if trials <= 0:
        return EMPTY
    successes = min(successes, trials)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))


def mean_with_interval(total: float, total_sq: float, n: float, *, z: float = Z95) -> Estimate:
    """The mean of n values (those not summed count as 0) with a normal-approximation interval."""
    if n <= 0:
        return EMPTY
    mean = total / n
    variance = max(0.0, total_sq / n - mean * mean)
    half = z * math.sqrt(variance / n) if n > 1 else 0.0
    return Estimate(mean, max(0.0, mean - half), mean + half)
