"""Rules on `metrics.*`: every measure is a registry field, and segments built on them select by hand."""

from datetime import UTC, datetime, timedelta

import pytest

from contacts.metrics.compute import compute_metrics
from contacts.models import ContactMetrics, Layer
from segments.rules.compiler import matching_contacts
from segments.rules.registry import get_fields
from tests.factories import ActivityFactory, ContactFactory

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def act(contact, kind, days_ago=0, **fields):
    return ActivityFactory(contact=contact, kind=kind, occurred_at=T - timedelta(days=days_ago), **fields)


def members(rule: dict) -> set[int]:
    return set(matching_contacts(rule, now=T).values_list("pk", flat=True))


def test_every_stored_measure_is_a_metrics_field_with_type_and_layer():
    fields = {path: field for path, field in get_fields().items() if path.startswith("metrics.")}
    json_details = {"top_topics", "topic_shares", "product_interest"}
    stored = {f.name for f in ContactMetrics._meta.concrete_fields} - {"contact"} - json_details

    assert {path.removeprefix("metrics.") for path in fields} == stored
    assert fields["metrics.engagement_level"].choices == ("highly_engaged", "moderately_engaged", "disengaged")
    assert (fields["metrics.rfv_cell"].type, fields["metrics.rfv_cell"].layer) == ("choice", Layer.VALUE)
    assert (fields["metrics.tenure_days"].type, fields["metrics.tenure_days"].layer) == ("number", Layer.LIFECYCLE)
    assert (fields["metrics.topics"].type, fields["metrics.topics"].layer) == ("tags", Layer.BEHAVIORAL)


def test_engagement_top_twenty_percent_matches_the_highly_engaged_level():
    contacts = ContactFactory.create_batch(10)
    for views, contact in enumerate(contacts, start=1):
        for _ in range(views):
            act(contact, "page_view", 0)
    compute_metrics(as_of=T)
    top_two = {contacts[8].pk, contacts[9].pk}

    assert members({"field": "metrics.engagement_score", "op": "top_percent", "value": 20}) == top_two
    assert members({"field": "metrics.engagement_level", "op": "eq", "value": "highly_engaged"}) == top_two
    bottom = members({"field": "metrics.engagement_level", "op": "eq", "value": "disengaged"})
    assert bottom == {c.pk for c in contacts[:4]}


def test_topic_rules_separate_readers_and_contacts_without_metrics_are_missing():
    cloud, mixed, security = ContactFactory.create_batch(3)
    no_metrics_yet = ContactFactory()
    act(cloud, "content_download", 1, topic="cloud-migration")
    for topic in ["cloud-migration", "cloud-migration", "security", "security", "finops"]:
        act(mixed, "page_view", 0, topic=topic)
    act(security, "page_view", 0, topic="security")
    compute_metrics(as_of=T, contact_ids=[cloud.pk, mixed.pk, security.pk])
    readers = {
        "all": [
            {"field": "metrics.top_topic", "op": "eq", "value": "Cloud-Migration"},
            {"field": "metrics.top_topic_share", "op": "gte", "value": 40},
        ]
    }

    assert members(readers) == {cloud.pk, mixed.pk}
    assert members({"field": "metrics.topics", "op": "contains_any", "value": ["security"]}) == {mixed.pk, security.pk}
    assert members({"not": readers}) == {security.pk, no_metrics_yet.pk}
    assert members({"field": "metrics.top_topic", "op": "is_not_set"}) == {no_metrics_yet.pk}


def test_velocity_disengagement_and_intent_flags_in_rules():
    accelerating, lapsed, shopper, idle = ContactFactory.create_batch(4)
    for _ in range(4):
        act(accelerating, "site_visit", 1)
    act(lapsed, "demo_request", 65)
    act(shopper, "pricing_view", 3, product="vault")
    compute_metrics(as_of=T)

    assert members({"field": "metrics.is_accelerating", "op": "is_true"}) == {accelerating.pk}
    assert members({"field": "metrics.recently_disengaged", "op": "is_true"}) == {lapsed.pk}
    assert members({"field": "metrics.strong_intent_products", "op": "contains_any", "value": ["Vault"]}) == {
        shopper.pk
    }
    assert idle.pk in members({"field": "metrics.strong_intent", "op": "is_false"})


def test_rfv_cells_in_rules():
    champion, lapsed_regular, occasional = ContactFactory.create_batch(3)
    for days in (1, 5, 9):
        act(champion, "purchase", days, value=900)
    for days in (300, 310, 320):
        act(lapsed_regular, "purchase", days, value=100)
    act(occasional, "purchase", 200, value=10)
    compute_metrics(as_of=T)

    assert members({"field": "metrics.rfv_cell", "op": "eq", "value": "champions"}) == {champion.pk}
    assert members({"field": "metrics.rfv_cell", "op": "in", "value": ["at_risk"]}) == {lapsed_regular.pk}
    assert members({"field": "metrics.r_score", "op": "lte", "value": 2}) == {lapsed_regular.pk}
    assert members({"field": "metrics.monetary", "op": "gte", "value": 300}) == {champion.pk, lapsed_regular.pk}
