"""Topic and product interest: shares, ordering, strong intent, computed by hand."""

from datetime import UTC, datetime, timedelta

import pytest

from contacts.metrics.compute import compute_metrics
from contacts.models import ContactMetrics
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def act(contact, kind, days_ago=0, *, seconds=0, **fields):
    occurred_at = T - timedelta(days=days_ago) + timedelta(seconds=seconds)
    return ActivityFactory(contact=contact, kind=kind, occurred_at=occurred_at, **fields)


def metrics_of(contact) -> ContactMetrics:
    return ContactMetrics.objects.get(contact=contact)


def test_topic_shares_are_recency_weighted_and_ordered_strongest_first():
    contact = ContactFactory()
    for _ in range(3):
        act(contact, "page_view", 0, topic="cloud-migration")
    act(contact, "content_download", 30, topic="Security")  # half of one, whatever the kind's weight
    act(contact, "email_open", 0, topic="security")

    compute_metrics(as_of=T)

    metrics = metrics_of(contact)
    assert metrics.top_topics == [{"topic": "cloud-migration", "share": 66.7}, {"topic": "security", "share": 33.3}]
    assert metrics.topics == ["cloud-migration", "security"]
    assert metrics.topic_shares == {"cloud-migration": 66.7, "security": 33.3}
    assert (metrics.top_topic, metrics.top_topic_share) == ("cloud-migration", 66.7)


def test_same_firmographics_different_reading_gives_different_top_topics():
    company = CompanyFactory()
    cloud_reader = ContactFactory(company=company, job_title="CTO")
    security_reader = ContactFactory(company=company, job_title="CTO")
    act(cloud_reader, "content_download", 2, topic="cloud-migration")
    act(security_reader, "content_download", 2, topic="cybersecurity")

    compute_metrics(as_of=T)

    assert metrics_of(cloud_reader).top_topic == "cloud-migration"
    assert metrics_of(security_reader).top_topic == "cybersecurity"


def test_tied_topics_are_ordered_by_name_and_only_five_are_kept():
    contact = ContactFactory()
    for topic in ["f", "e", "d", "c", "b", "a"]:
        act(contact, "page_view", 1, topic=topic)

    compute_metrics(as_of=T)

    metrics = metrics_of(contact)
    assert metrics.topics == ["a", "b", "c", "d", "e"]
    assert {item["share"] for item in metrics.top_topics} == {16.7}


def test_product_intent_is_weighted_and_a_recent_pricing_view_is_strong():
    contact = ContactFactory()
    act(contact, "pricing_view", 14, product="Vault")  # exactly 14 days: strong; 6 * 0.5 ** (14/30)
    act(contact, "feature_comparison", 0, product="gateway")  # 5
    act(contact, "email_click", 0, product="gateway")  # not a product-interest kind

    compute_metrics(as_of=T)

    metrics = metrics_of(contact)
    vault_intent = round(6 * 0.5 ** (14 / 30), 2)
    assert metrics.product_interest == [
        {"product": "gateway", "intent": 5.0, "strong": False},
        {"product": "vault", "intent": vault_intent, "strong": True},
    ]
    assert metrics.products == ["gateway", "vault"]
    assert (metrics.top_product, metrics.top_product_intent) == ("gateway", 5.0)
    assert (metrics.strong_intent, metrics.strong_intent_products) == (True, ["vault"])


def test_a_pricing_view_older_than_fourteen_days_is_not_strong():
    contact = ContactFactory()
    act(contact, "pricing_view", 14, seconds=-1, product="vault")
    act(contact, "demo_request", 20, product="vault")

    compute_metrics(as_of=T)

    metrics = metrics_of(contact)
    assert (metrics.top_product, metrics.strong_intent, metrics.strong_intent_products) == ("vault", False, [])
    assert metrics.top_product_intent == round(6 * 0.5 ** ((14 + 1 / 86400) / 30) + 10 * 0.5 ** (20 / 30), 2)
