"""Velocity, recently disengaged, and the lifecycle/value measures (tenure, stage, renewal, readiness)."""

from datetime import UTC, date, datetime, timedelta

import pytest

from contacts.metrics.compute import compute_metrics
from contacts.models import ContactMetrics
from tests.factories import ActivityFactory, ContactFactory

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def act(contact, kind, days_ago=0, *, seconds=0, **fields):
    occurred_at = T - timedelta(days=days_ago) + timedelta(seconds=seconds)
    return ActivityFactory(contact=contact, kind=kind, occurred_at=occurred_at, **fields)


def metrics_of(contact) -> ContactMetrics:
    return ContactMetrics.objects.get(contact=contact)


def velocity(contact) -> tuple:
    m = metrics_of(contact)
    return (m.recent_activity_count, m.previous_activity_count, m.velocity_ratio, m.is_accelerating)


def test_velocity_windows_include_their_start_and_ratio_two_with_four_recent_accelerates():
    doubling, steady, fresh, few = ContactFactory.create_batch(4)
    act(doubling, "page_view", 30)  # start of the recent window
    for _ in range(3):
        act(doubling, "page_view", 1)
    act(doubling, "page_view", 30, seconds=-1)  # previous window
    act(doubling, "page_view", 60)  # start of the previous window
    act(doubling, "page_view", 60, seconds=-1)  # before both windows
    for _ in range(5):
        act(steady, "email_open", 5)
    for _ in range(3):
        act(steady, "email_open", 45)
    for _ in range(4):
        act(fresh, "site_visit", 2)
    for _ in range(3):
        act(few, "site_visit", 2)

    compute_metrics(as_of=T)

    assert velocity(doubling) == (4, 2, 2.0, True)
    assert velocity(steady) == (5, 3, pytest.approx(5 / 3), False)
    assert velocity(fresh) == (4, 0, None, True)
    assert velocity(few) == (3, 0, None, False)


def test_recently_disengaged_means_engaged_sixty_days_ago_and_quiet_for_thirty():
    lapsed, still_active, never, late_starter = ContactFactory.create_batch(4)
    act(lapsed, "demo_request", 65)
    act(lapsed, "email_open", 31)
    act(still_active, "demo_request", 65)
    act(still_active, "page_view", 10)
    act(late_starter, "demo_request", 45)

    compute_metrics(as_of=T)

    lapsed_metrics = metrics_of(lapsed)
    assert lapsed_metrics.past_engagement_score == pytest.approx(10 * 0.5 ** (5 / 30), abs=1e-6)
    assert lapsed_metrics.recently_disengaged is True
    assert metrics_of(still_active).recently_disengaged is False
    assert metrics_of(never).recently_disengaged is False
    assert metrics_of(late_starter).past_engagement_score == 0
    assert metrics_of(late_starter).recently_disengaged is False


def test_lifecycle_measures_and_expansion_readiness():
    customer = ContactFactory(
        lifecycle_stage="customer",
        lifecycle_changed_at=T - timedelta(days=10, hours=5),
        customer_since=date(2026, 2, 21),
        renewal_date=date(2026, 7, 1),
        product_adoption=60,
    )
    act(customer, "support_ticket_opened", 3)
    act(customer, "support_ticket_opened", 2)
    act(customer, "support_ticket_closed", 1)
    lead = ContactFactory(lifecycle_changed_at=T + timedelta(hours=1), renewal_date=date(2026, 5, 30))

    compute_metrics(as_of=T)

    m = metrics_of(customer)
    assert (m.tenure_days, m.days_in_stage, m.days_to_renewal, m.open_tickets) == (100, 10, 30, 1)
    # both score 0 -> percentile 100; 0.4*60 + 0.4*100 + 0.2*(100*100/365) - 10*1 = 59.479
    assert m.engagement_percentile == 100
    assert m.expansion_readiness == 59.5
    other = metrics_of(lead)
    assert (other.tenure_days, other.days_in_stage, other.days_to_renewal, other.expansion_readiness) == (
        None,
        0,
        -2,
        None,
    )


def test_expansion_readiness_is_clamped_to_zero():
    customer = ContactFactory(lifecycle_stage="customer", customer_since=date(2026, 5, 31), product_adoption=0)
    for _ in range(9):
        act(customer, "support_ticket_opened", 1)
    ContactFactory()
    act(ContactFactory(), "demo_request", 0)

    compute_metrics(as_of=T)

    assert metrics_of(customer).expansion_readiness == 0
