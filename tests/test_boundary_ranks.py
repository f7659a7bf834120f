"""Kruskal–Wallis from scores sorted once (a boundary test ranks a million scores per bracketing)."""

import numpy as np
import pytest
from scipy import stats

from segments.boundaries import kruskal_from_counts, kruskal_of_sorted


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kruskal_of_sorted_values_equals_scipy_and_the_counted_form_with_ties(seed):
    # given scores with many ties in four groups, one of them empty
    rng = np.random.default_rng(seed)
    values = np.round(rng.gamma(2.0, 3.0, size=500), 0)
    groups = rng.choice([0, 1, 3], size=500, p=[0.5, 0.3, 0.2])
    order = np.argsort(values)

    # when they are ranked from the sorted values
    found = kruskal_of_sorted(values[order], groups[order])

    # then H, its p-value and epsilon² are scipy's, and exactly those of the counted form
    h, p = stats.kruskal(*[values[groups == g] for g in (0, 1, 3)])
    assert found == pytest.approx((h, p, h / (len(values) - 1)))
    assert found == kruskal_from_counts(values, groups, np.ones(len(values)))


def test_kruskal_of_sorted_values_needs_two_groups():
    assert kruskal_of_sorted(np.array([1.0, 2.0, 3.0]), np.array([2, 2, 2])) is None
    assert kruskal_of_sorted(np.array([]), np.array([], dtype=int)) is None
