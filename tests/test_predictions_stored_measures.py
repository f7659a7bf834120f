"""The daily scoring reads the behavioural measures of the last full metrics run when they are
current: the features equal the recomputed ones as of that run, contacts written since are
recomputed as of now, and stale runs are not read."""

from datetime import timedelta

import numpy as np
import pytest

from contacts.changes import contacts_changed
from contacts.metrics.compute import compute_metrics
from contacts.models import Activity, Contact, MetricsRun, ScoringModel
from predictions.features import read_features
from predictions.models import PropensityScore
from predictions.scoring import score_model
from predictions.stored_measures import measures_source
from tests.predictions_support import NOW

pytestmark = pytest.mark.django_db

LATER = NOW + timedelta(hours=1)


def assert_same_features(a, b) -> None:
    assert a.as_of == b.as_of
    assert a.contact_ids.tolist() == b.contact_ids.tolist()
    assert sorted(a.numbers) == sorted(b.numbers)
    for name in a.numbers:
        assert np.array_equal(a.numbers[name], b.numbers[name], equal_nan=True), name
    assert a.categories.keys() == b.categories.keys()
    for name, (codes, vocabulary) in a.categories.items():
        other_codes, other_vocabulary = b.categories[name]
        assert [vocabulary[c] if c >= 0 else None for c in codes] == [
            other_vocabulary[c] if c >= 0 else None for c in other_codes
        ], name
    assert a.tags.keys() == b.tags.keys()
    for name, (rows, codes, vocabulary) in a.tags.items():
        other_rows, other_codes, other_vocabulary = b.tags[name]
        assert sorted(zip(rows.tolist(), (vocabulary[c] for c in codes), strict=True)) == sorted(
            zip(other_rows.tolist(), (other_vocabulary[c] for c in other_codes), strict=True)
        ), name


def test_features_from_fresh_stored_measures_equal_the_recomputed_ones(trained):
    # given the nightly metrics run as of NOW
    compute_metrics(as_of=NOW)

    # when the scoring an hour later asks where to read the measures from
    source = measures_source(now=LATER)

    # then they are the run's, and every feature read from them equals the recomputed one as of the run
    assert source.stored is not None
    assert source.stored.as_of == NOW
    stored = read_features(as_of=NOW, stored=source.stored)
    recomputed = read_features(as_of=NOW)
    assert len(stored) == Contact.objects.count()
    assert any(values.any() for name, values in stored.numbers.items() if name.startswith("pricing_view_"))
    assert_same_features(stored, recomputed)


def test_contacts_written_since_the_run_are_recomputed_as_of_now(trained):
    compute_metrics(as_of=NOW)
    leads = list(Contact.objects.exclude(lifecycle_stage="customer").order_by("pk").values_list("pk", flat=True))
    # an activity stored after the run (above its watermark), and a change waiting for the catch-up
    Activity.objects.create(contact_id=leads[0], kind="pricing_view", occurred_at=NOW - timedelta(days=1))
    contacts_changed([leads[1]])

    summary = score_model(trained, now=LATER)

    source = measures_source(now=LATER)
    stored = read_features(as_of=NOW, stored=source.stored)
    assert leads[0] not in stored.contact_ids
    assert leads[1] not in stored.contact_ids
    scored_at = dict(PropensityScore.objects.filter(model=trained).values_list("contact_id", "scored_at"))
    assert scored_at[leads[0]] == scored_at[leads[1]] == LATER
    assert {at for pk, at in scored_at.items() if pk not in leads[:2]} == {NOW}
    assert summary.measures.startswith("stored as of the metrics run")
    assert "2 recomputed as of now" in summary.measures


def test_scores_from_stored_measures_equal_scores_recomputed_as_of_the_run(trained, settings):
    compute_metrics(as_of=NOW)
    score_model(trained, now=LATER)
    stored = dict(PropensityScore.objects.filter(model=trained).values_list("contact_id", "probability"))

    settings.PREDICTIONS_STORED_MEASURES_MAX_HOURS = 0
    summary = score_model(trained, now=NOW)

    assert summary.measures.startswith("recomputed")
    recomputed = dict(PropensityScore.objects.filter(model=trained).values_list("contact_id", "probability"))
    assert stored == recomputed


def test_stored_measures_are_not_read_when_they_are_not_current(trained, settings):
    assert "no full metrics run" in measures_source(now=LATER).reason

    compute_metrics(as_of=NOW)
    assert measures_source(now=NOW + timedelta(hours=25)).stored is None
    assert "not within 24 hours" in measures_source(now=NOW + timedelta(hours=25)).reason
    assert measures_source(now=NOW - timedelta(minutes=1)).stored is None

    settings.METRICS_RECOMPUTE_ON_WRITE = False
    assert "METRICS_RECOMPUTE_ON_WRITE" in measures_source(now=LATER).reason
    settings.METRICS_RECOMPUTE_ON_WRITE = True

    MetricsRun.objects.update(last_activity_id=None)
    assert "no activity watermark" in measures_source(now=LATER).reason

    compute_metrics(as_of=NOW)
    ScoringModel.objects.get_active().save_version()
    assert "scoring model changed" in measures_source(now=LATER).reason


def test_a_scoring_after_many_writes_recomputes_everyone(trained):
    compute_metrics(as_of=NOW)
    contacts_changed(Contact.objects.order_by("pk").values_list("pk", flat=True)[:300])

    summary = score_model(trained, now=LATER)

    assert summary.measures.startswith("recomputed: 300 of 1,000 contacts changed")
    assert set(PropensityScore.objects.filter(model=trained).values_list("scored_at", flat=True)) == {LATER}
