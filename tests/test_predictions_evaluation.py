"""Validation figures against scikit-learn's own functions, and the model file's safety."""

import numpy as np
import pytest
import skops.io as sio
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_score, roc_auc_score

from predictions import artifacts
from predictions.evaluation import (
    bootstrap_auc,
    calibration,
    decile_lift,
    precision_at,
    validation_report,
    weighted_auc,
)


@pytest.fixture
def scored():
    rng = np.random.default_rng(7)
    y = rng.random(5000) < 0.2
    # Scores rounded to two places: many ties, which AUC must count half.
    p = np.round(np.clip(0.2 + 0.25 * (y - 0.2) + rng.normal(0, 0.15, 5000), 0, 1), 2)
    return y.astype(int), p


def test_auc_matches_scikit_learn_with_ties_and_weights(scored):
    y, p = scored
    weights = np.random.default_rng(3).integers(0, 4, len(y))

    assert weighted_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert weighted_auc(y, p, weights) == pytest.approx(roc_auc_score(y, p, sample_weight=weights), abs=1e-12)


def test_the_bootstrap_interval_surrounds_the_auc_and_is_about_two_standard_errors_wide(scored):
    y, p = scored
    low, high = bootstrap_auc(y, p, seed=1)
    auc = roc_auc_score(y, p)
    # Hanley & McNeil's standard error of an AUC
    n1, n0 = y.sum(), len(y) - y.sum()
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    se = np.sqrt((auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0))
    assert low < auc < high
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.25)


def test_calibration_matches_scikit_learn(scored):
    y, p = scored
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")

    rows = calibration(y, p)

    assert [row["observed"] for row in rows] == pytest.approx(list(prob_true))
    assert [row["predicted"] for row in rows] == pytest.approx(list(prob_pred))
    assert sum(row["contacts"] for row in rows) == len(y)


def test_precision_at_the_top_and_lift_match_scikit_learn(scored):
    y, p = scored
    order = np.argsort(-p, kind="stable")
    for percent in (1, 5, 10):
        k = int(np.ceil(percent * len(y) / 100))
        chosen = np.zeros(len(y), dtype=int)
        chosen[order[:k]] = 1
        assert precision_at(y, p, percent) == pytest.approx(precision_score(y, chosen))
    lift = decile_lift(y, p)
    top = np.zeros(len(y), dtype=int)
    top[order[:500]] = 1
    assert [row["contacts"] for row in lift] == [500] * 10
    assert lift[0]["lift"] == pytest.approx(precision_score(y, top) / y.mean())
    assert np.mean([row["rate"] for row in lift]) == pytest.approx(y.mean())


def test_the_report_counts_and_bands(scored):
    y, p = scored
    report = validation_report(y, p)
    assert report["positives"] == y.sum()
    assert report["negatives"] == len(y) - y.sum()
    assert report["base_rate"] == pytest.approx(y.mean())
    assert report["band"] == {True: "good", False: "fair"}[report["auc"] >= 0.7] or report["auc"] >= 0.8


def _fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    return LogisticRegression().fit(X, X[:, 0] > 0)


def test_a_model_round_trips_through_skops():
    data, signature = artifacts.dump(_fitted())
    loaded = artifacts.load(data, signature)
    assert loaded.predict_proba(np.zeros((1, 3))).shape == (1, 2)
    assert not data.startswith(b"\x80")  # not a pickle stream


def test_a_tampered_model_is_refused():
    data, signature = artifacts.dump(_fitted())
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0xFF

    with pytest.raises(artifacts.ArtifactRefused, match="does not match its signature"):
        artifacts.load(bytes(tampered), signature)
    with pytest.raises(artifacts.ArtifactRefused, match="does not match its signature"):
        artifacts.load(data, "0" * 64)


class Payload:
    """A type no model of ours holds: a crafted file naming it must not be built."""


def test_a_signed_file_naming_an_unexpected_type_is_refused():
    data = sio.dumps({"model": Payload()})

    with pytest.raises(artifacts.ArtifactRefused, match=r"outside the allowed list: .*Payload"):
        artifacts.load(data, artifacts.sign(data))
