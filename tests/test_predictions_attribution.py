"""Boosting's per-contact factors against their definition: Shapley values computed by brute force
over every coalition of fields, on a small model fitted here (no database)."""

from itertools import combinations
from math import factorial

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from predictions.attribution import attributions, background_rows, players


@pytest.fixture(scope="module")
def boosted():
    rng = np.random.default_rng(7)
    n = 1500
    seniority = rng.integers(0, 3, n)  # one-hot below: vp, manager, or neither
    X = np.column_stack(
        [rng.normal(size=n), seniority == 0, seniority == 1, rng.normal(size=n), rng.poisson(2, n)]
    ).astype(np.float32)
    X[rng.random(n) < 0.2, 3] = np.nan  # boosting sends missing values down a branch of its own
    logit = 1.5 * X[:, 0] + X[:, 1] * X[:, 4] - np.nan_to_num(X[:, 3]) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    model = HistGradientBoostingClassifier(max_iter=25, random_state=0).fit(X, y)
    return model, X


def _shapley_by_coalitions(model, x, background, groups):
    """Average over the background rows r of the Shapley values of v(S) = raw score of x's fields S
    and r's others, each coalition evaluated by the model itself."""
    out = np.zeros(len(groups))
    n = len(groups)
    for r in background:
        for i in range(n):
            others = [g for g in range(n) if g != i]
            for size in range(n):
                for coalition in combinations(others, size):
                    with_i, without = r.copy(), r.copy()
                    for g in coalition:
                        with_i[groups[g]] = without[groups[g]] = x[groups[g]]
                    with_i[groups[i]] = x[groups[i]]
                    weight = factorial(size) * factorial(n - size - 1) / factorial(n)
                    out[i] += weight * (model.decision_function(np.stack([with_i, without])) @ [1, -1])
    return out / len(background)


def test_factors_are_the_shapley_values_of_the_fields_and_add_up_to_the_raw_score(boosted):
    model, X = boosted
    groups = [[0], [1, 2], [3], [4]]
    background, contacts = X[:6], X[100:104]

    parts = attributions(model, contacts, background, groups)

    expected = np.array([_shapley_by_coalitions(model, x, background, groups) for x in contacts])
    assert parts == pytest.approx(expected, abs=1e-9)
    baseline = model.decision_function(background).mean()
    assert parts.sum(axis=1) + baseline == pytest.approx(model.decision_function(contacts), abs=1e-9)


def test_a_field_the_contact_shares_with_every_background_row_gets_nothing(boosted):
    model, X = boosted
    background = X[:8].copy()
    background[:, 4] = 3.0
    contact = X[200:201].copy()
    contact[0, 4] = 3.0

    parts = attributions(model, contact, background, [[0], [1, 2], [3], [4]])

    assert parts[0, 3] == 0
    assert np.abs(parts[0, :3]).sum() > 0


def test_blocks_of_contacts_give_the_same_factors_as_one_at_a_time(boosted, monkeypatch):
    model, X = boosted
    groups = [[0], [1, 2], [3], [4]]
    whole = attributions(model, X[300:320], X[:10], groups)
    monkeypatch.setattr("predictions.attribution.BLOCK_CELLS", 1)

    assert attributions(model, X[300:320], X[:10], groups) == pytest.approx(whole, abs=1e-12)


def test_players_are_fields_a_number_with_its_missing_indicator_a_category_whole_each_tag_alone():
    columns = [
        {"kind": "number", "source": "employees"},
        {"kind": "missing", "source": "employees"},
        {"kind": "onehot", "source": "seniority", "value": "vp"},
        {"kind": "tag", "source": "interests", "value": "ai"},
        {"kind": "onehot", "source": "seniority", "value": "manager"},
        {"kind": "tag", "source": "interests", "value": "cloud"},
    ]

    assert players(columns) == [[0, 1], [2, 4], [3], [5]]


def test_the_background_is_a_fixed_sample_of_training_rows_as_plain_floats():
    X = np.arange(200, dtype=np.float32).reshape(100, 2)

    rows = background_rows(X, seed=1)

    assert len(rows) == 50
    assert rows == background_rows(X, seed=1)
    assert all(isinstance(v, float) for row in rows for v in row)
    assert {tuple(row) for row in rows} <= {tuple(row) for row in X.tolist()}
