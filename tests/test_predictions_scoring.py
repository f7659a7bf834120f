"""Scores as metrics.propensity_* fields: written by scoring, read alike by the compiler and the
explainer; per-contact explanations; a tampered model leaves the previous version scoring."""

from datetime import timedelta

import numpy as np
import pytest

from contacts.models import Contact, LifecycleChange
from predictions.encoding import encode
from predictions.explain import contributions, explain_contact
from predictions.features import read_features
from predictions.models import ModelVersion, PropensityScore, VersionState
from predictions.scoring import score_model, tier_of, usable_version
from predictions.training import queue_version, train_version
from segments.rules.compiler import matching_contacts
from segments.rules.explainer import explain, load_facts
from segments.rules.registry import get_fields
from tests.predictions_support import NOW

pytestmark = pytest.mark.django_db


def test_scores_cover_the_population_with_percentiles_and_quartile_tiers(trained):
    summary = score_model(trained, now=NOW)

    leads = Contact.objects.exclude(lifecycle_stage__in=["customer", "evangelist"])
    scores = PropensityScore.objects.filter(model=trained)
    assert summary.contacts == leads.count() == scores.count()
    assert set(scores.values_list("contact_id", flat=True)) == set(leads.values_list("id", flat=True))
    p = np.array(scores.values_list("probability", flat=True))
    for score in scores.order_by("?")[:50]:
        assert score.percentile == pytest.approx(100 * (p <= score.probability).mean())
        expected = ["low", "medium", "high", "very_high"][min(3, int(np.ceil(score.percentile / 25)) - 1)]
        assert score.tier == expected
    version = ModelVersion.objects.get(model=trained, is_active=True)
    assert version.scored_contacts == scores.count()


@pytest.mark.parametrize(
    "rule",
    [
        {"field": "metrics.propensity_convert", "op": "top_percent", "value": 20},
        {"field": "metrics.propensity_convert", "op": "gte", "value": 0.3},
        {"field": "metrics.propensity_convert_tier", "op": "in", "value": ["very_high", "high"]},
        {"not": {"field": "metrics.propensity_convert_percentile", "op": "gt", "value": 40}},
        {"field": "metrics.propensity_convert", "op": "is_not_set"},
    ],
)
def test_compiler_and_explainer_agree_on_score_rules(trained, rule, django_assert_max_num_queries):
    score_model(trained, now=NOW)
    fields = get_fields()
    members = set(matching_contacts(rule, now=NOW).values_list("pk", flat=True))
    ids = list(Contact.objects.values_list("pk", flat=True))

    with django_assert_max_num_queries(6):
        facts = load_facts(rule, ids, now=NOW, fields=fields)
    explained = {pk for pk in ids if explain(rule, facts[pk].contact, now=NOW, fields=fields, facts=facts[pk]).result}

    assert members == explained
    assert members  # every rule above selects someone
    if rule.get("op") == "top_percent":
        scored = PropensityScore.objects.filter(model=trained).count()
        assert 0.2 * scored <= len(members) <= 0.2 * scored + 5  # ties go in together
    one = Contact.objects.get(pk=ids[0])
    assert explain(rule, one, now=NOW).result == (one.pk in members)


def test_contact_factors_sum_to_the_logistic_models_decision(trained):
    score_model(trained, now=NOW)
    version, fitted, _ = usable_version(trained)
    score = PropensityScore.objects.filter(model=trained).order_by("-probability").first()

    explanation = explain_contact(trained, score.contact_id)

    raw = read_features(as_of=score.scored_at, contact_ids=[score.contact_id])
    row = encode(raw, version.features["columns"])
    parts, intercept = contributions(fitted, row[0])
    base = fitted.calibrated_classifiers_[0].estimator
    assert intercept + parts.sum() == pytest.approx(base.decision_function(row)[0], abs=1e-4)
    assert explanation.decision == pytest.approx(base.decision_function(row)[0], abs=1e-4)
    assert explanation.probability == pytest.approx(fitted.predict_proba(row)[0, 1], abs=1e-6)
    assert explanation.probability == score.probability
    shown = [f.contribution for f in explanation.up]
    assert shown == sorted(shown, reverse=True)
    assert all(f.contribution > 0 for f in explanation.up)
    assert all(f.contribution < 0 for f in explanation.down)
    assert any("pricing page views" in f.label for f in explanation.up)
    assert str(explanation.up[0]).endswith("(+)")


def test_a_customer_is_outside_the_convert_population(trained):
    score_model(trained, now=NOW)
    customer = Contact.objects.filter(lifecycle_stage="customer").first()

    explanation = explain_contact(trained, customer.pk)

    assert explanation.probability is None
    assert "outside the convert model's population" in explanation.note


def test_a_tampered_model_is_refused_and_the_previous_version_keeps_scoring(trained):
    first = ModelVersion.objects.get(model=trained, is_active=True)
    train_version(queue_version(trained), now=NOW)
    second = ModelVersion.objects.get(model=trained, is_active=True)
    assert second.number == 2
    data = bytearray(second.artifact)
    data[100] ^= 0x01
    ModelVersion.objects.filter(pk=second.pk).update(artifact=bytes(data))

    summary = score_model(trained, now=NOW)

    second.refresh_from_db()
    first.refresh_from_db()
    assert summary.version == 1
    assert summary.fallback_from == 2
    assert second.state == VersionState.FAILED
    assert not second.is_active
    assert "does not match its signature" in second.message
    assert first.is_active
    assert set(PropensityScore.objects.filter(model=trained).values_list("version_id", flat=True)) == {first.pk}


def test_scoring_some_contacts_replaces_only_theirs(trained):
    score_model(trained, now=NOW)
    before = dict(PropensityScore.objects.filter(model=trained).values_list("contact_id", "probability"))
    contact = Contact.objects.filter(pk__in=list(before)).first()
    contact.seniority = "vp" if contact.seniority != "vp" else "entry"
    contact.save()

    score_model(trained, now=NOW, contact_ids=[contact.pk])

    after = dict(PropensityScore.objects.filter(model=trained).values_list("contact_id", "probability"))
    assert after.keys() == before.keys()
    assert {pk for pk in after if after[pk] != before[pk]} <= {contact.pk}
    mine = PropensityScore.objects.get(model=trained, contact=contact)
    p = np.array(list(after.values()))
    assert mine.percentile == pytest.approx(100 * (p <= mine.probability).mean())


@pytest.mark.parametrize("touched", [1, 30])
def test_scoring_some_contacts_ranks_them_among_every_stored_score(trained, touched):
    # given stored scores, and a few (one probe each) or many (one window count) contacts changed
    score_model(trained, now=NOW)
    contacts = list(Contact.objects.filter(propensity_scores__model=trained).order_by("pk")[:touched])
    for contact in contacts:
        contact.seniority = "vp" if contact.seniority != "vp" else "entry"
    Contact.objects.bulk_update(contacts, ["seniority"])

    # when they alone are scored again
    score_model(trained, now=NOW, contact_ids=[c.pk for c in contacts])

    # then each fresh score's percentile is the share of stored scores at or below it, and its tier follows
    stored = list(PropensityScore.objects.filter(model=trained))
    p = np.array([s.probability for s in stored])
    for score in (s for s in stored if s.contact_id in {c.pk for c in contacts}):
        assert score.percentile == pytest.approx(100 * (p <= score.probability).mean(), abs=1e-9)
        assert score.tier == tier_of(score.percentile)


def test_a_full_scoring_updates_scores_drops_the_departed_and_adds_the_new(trained):
    # given stored scores, then a lead who became a customer and a new lead
    score_model(trained, now=NOW)
    before = dict(PropensityScore.objects.filter(model=trained).values_list("contact_id", "probability"))
    converted = Contact.objects.get(pk=min(before))
    LifecycleChange.objects.create(
        contact=converted, from_stage="lead", to_stage="customer", changed_at=NOW + timedelta(hours=12)
    )
    newcomer = Contact.objects.create(email="newcomer@example.com", lifecycle_stage="lead", created_at=NOW)

    # when every contact is scored again, later
    later = NOW + timedelta(days=1)
    score_model(trained, now=later)

    # then the customer has no score, the newcomer has one, and every score is of the later run
    scores = PropensityScore.objects.filter(model=trained)
    assert set(scores.values_list("contact_id", flat=True)) == (set(before) - {converted.pk}) | {newcomer.pk}
    assert set(scores.values_list("scored_at", flat=True)) == {later}
    p = np.array(scores.values_list("probability", flat=True))
    for score in scores.order_by("?")[:20]:
        assert score.percentile == pytest.approx(100 * (p <= score.probability).mean())
