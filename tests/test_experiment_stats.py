"""Every experiment statistic against scipy / statsmodels on the same fixed data."""

import math
from decimal import Decimal

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

from activation import experiment_stats as st


def moments(values) -> st.Moments:
    decimals = [Decimal(str(v)) for v in values]
    return st.Moments(len(decimals), sum(decimals, Decimal(0)), sum((d * d for d in decimals), Decimal(0)))


@pytest.mark.parametrize(("c1", "n1", "c0", "n0"), [(130, 2000, 100, 2000), (3, 40, 9, 45), (51, 700, 50, 300)])
def test_rate_comparison_matches_statsmodels(c1, n1, c0, n0):
    result = st.compare_rates(c1, n1, c0, n0)

    _z, p = proportions_ztest([c1, c0], [n1, n0])
    low, high = confint_proportions_2indep(c1, n1, c0, n0, method="newcomb", compare="diff")
    rlow, rhigh = confint_proportions_2indep(c1, n1, c0, n0, method="log-adjusted", compare="ratio")
    assert result.p_value == pytest.approx(p, rel=1e-12)
    assert (result.absolute.low, result.absolute.high) == pytest.approx((low, high), rel=1e-12)
    assert result.absolute.value == pytest.approx(c1 / n1 - c0 / n0)
    assert (result.relative.low, result.relative.high) == pytest.approx((rlow - 1, rhigh - 1), rel=1e-12)


def test_rate_interval_is_wilson_as_statsmodels_gives_it():
    low, high = proportion_confint(17, 230, method="wilson")

    assert st.rate(17, 230) == st.Interval(17 / 230, pytest.approx(low), pytest.approx(high))


def test_no_test_when_everyone_had_the_same_outcome():
    result = st.compare_rates(0, 50, 0, 60)

    assert result.p_value is None
    assert result.absolute.value == 0


def test_welch_comparison_matches_scipy_on_the_raw_values():
    rng = np.random.default_rng(7)
    treated = np.round(rng.exponential(120, 400) * (rng.random(400) < 0.3), 2)
    generic = np.round(rng.exponential(100, 550) * (rng.random(550) < 0.25), 2)

    result = st.compare_means(moments(treated), moments(generic))

    expected = stats.ttest_ind(treated, generic, equal_var=False)
    interval = expected.confidence_interval()
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert (result.absolute.low, result.absolute.high) == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert result.absolute.value == pytest.approx(treated.mean() - generic.mean())


def test_mean_interval_matches_scipy():
    values = [0, 0, 12.5, 40, 0, 99.99, 3]

    interval = st.mean(moments(values))

    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (interval.low, interval.high) == pytest.approx((low, high))


def test_benjamini_hochberg_matches_statsmodels_and_skips_untested():
    p_values = [0.01, None, 0.04, 0.03, 0.2, 0.001]

    adjusted = st.adjust(p_values)

    expected = multipletests([0.01, 0.04, 0.03, 0.2, 0.001], method="fdr_bh")[1]
    assert adjusted[1] is None
    assert [adjusted[i] for i in (0, 2, 3, 4, 5)] == pytest.approx(list(expected))


def test_sample_size_for_rates_matches_statsmodels_power():
    required = st.sample_size_rates(0.05, 0.02, ratio=1.5)

    n1 = NormalIndPower().solve_power(proportion_effectsize(0.07, 0.05), alpha=0.05, power=0.8, ratio=1.5)
    assert required == (math.ceil(n1), math.ceil(n1 * 1.5))
    assert NormalIndPower().power(proportion_effectsize(0.07, 0.05), required[0], 0.05, ratio=1.5) >= 0.8


def test_sample_size_for_means_matches_statsmodels_power():
    required = st.sample_size_means(40.0, 5.0, ratio=1.0)

    assert required[0] == math.ceil(TTestIndPower().solve_power(5 / 40, alpha=0.05, power=0.8, ratio=1.0))


def test_a_target_rate_outside_zero_to_one_has_no_sample_size():
    assert st.sample_size_rates(0.99, 0.02, ratio=1) is None
