"""Engagement score, percentile and levels, email and web levels, run summary: checked by hand."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.metrics.compute import compute_metrics
from contacts.models import ContactMetrics, MetricsRun, ScoringModel
from tests.factories import ActivityFactory, ContactFactory

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def act(contact, kind, days_ago=0, *, seconds=0, **fields):
    occurred_at = T - timedelta(days=days_ago) + timedelta(seconds=seconds)
    return ActivityFactory(contact=contact, kind=kind, occurred_at=occurred_at, **fields)


def metrics_of(contact) -> ContactMetrics:
    return ContactMetrics.objects.get(contact=contact)


def test_an_activity_one_half_life_old_counts_half_its_weight():
    clicker, viewer = ContactFactory(), ContactFactory()
    act(clicker, "email_click", 30)  # weight 3, one half-life
    act(viewer, "page_view", 60)  # weight 1, two half-lives

    compute_metrics(as_of=T)

    assert metrics_of(clicker).engagement_score == pytest.approx(1.5, abs=1e-6)
    assert metrics_of(viewer).engagement_score == pytest.approx(0.25, abs=1e-6)


def test_score_sums_weight_times_decay_over_kinds():
    contact = ContactFactory()
    act(contact, "demo_request", 0)  # 10
    act(contact, "form_submit", 15)  # 8 * 0.5 ** 0.5
    act(contact, "support_ticket_opened", 0)  # weight 0

    compute_metrics(as_of=T)

    assert metrics_of(contact).engagement_score == pytest.approx(10 + 8 * 0.5**0.5, abs=1e-6)


def test_edited_weights_and_half_life_change_the_score():
    model = ScoringModel.objects.get_active()
    model.weights = {**model.weights, "page_view": 4}
    model.half_life_days = 10
    model.save_version()
    contact = ContactFactory()
    act(contact, "page_view", 10)

    compute_metrics(as_of=T)

    assert metrics_of(contact).engagement_score == pytest.approx(2.0, abs=1e-6)


def test_percentiles_are_cume_dist_with_ties_equal_and_levels_follow_cut_offs():
    idle_a, idle_b, tied_a, tied_b, top = ContactFactory.create_batch(5)
    act(tied_a, "page_view", 0)
    act(tied_b, "page_view", 0)
    act(top, "demo_request", 0)

    compute_metrics(as_of=T)

    assert [metrics_of(c).engagement_percentile for c in (idle_a, idle_b, tied_a, tied_b, top)] == pytest.approx(
        [40, 40, 80, 80, 100]
    )
    assert [metrics_of(c).engagement_level for c in (idle_a, tied_a, top)] == [
        "disengaged",
        "moderately_engaged",
        "highly_engaged",
    ]
    assert metrics_of(tied_b).engagement_level == "moderately_engaged"


def test_default_cut_offs_split_ten_contacts_two_four_four():
    contacts = ContactFactory.create_batch(10)
    for views, contact in enumerate(contacts, start=1):
        for _ in range(views):
            act(contact, "page_view", 0)

    compute_metrics(as_of=T)

    levels = [metrics_of(c).engagement_level for c in contacts]
    assert levels == ["disengaged"] * 4 + ["moderately_engaged"] * 4 + ["highly_engaged"] * 2


def test_everyone_tied_at_zero_is_disengaged_not_top():
    contacts = ContactFactory.create_batch(3)

    compute_metrics(as_of=T)

    assert {metrics_of(c).engagement_level for c in contacts} == {"disengaged"}
    assert {metrics_of(c).engagement_percentile for c in contacts} == {100.0}


def test_contact_without_activity_gets_a_row_of_zeros_and_nulls():
    contact = ContactFactory()

    compute_metrics(as_of=T)

    metrics = metrics_of(contact)
    assert (metrics.activity_count, metrics.engagement_score, metrics.last_activity_at) == (0, 0, None)
    assert (metrics.email_engagement_level, metrics.web_activity_level) == ("disengaged", "dormant")
    assert (metrics.topics, metrics.top_topic, metrics.top_topic_share) == ([], "", None)
    assert (metrics.products, metrics.strong_intent, metrics.strong_intent_products) == ([], False, [])
    assert (metrics.recency_days, metrics.frequency, metrics.r_score, metrics.rfv_cell) == (None, 0, None, "")
    assert (metrics.velocity_ratio, metrics.is_accelerating, metrics.recently_disengaged) == (None, False, False)
    assert metrics.as_of == T


def test_email_level_counts_opens_once_and_clicks_twice_inside_the_window():
    highly, moderately, stale = ContactFactory.create_batch(3)
    for _ in range(5):
        act(highly, "email_open", 90)  # exactly on the window's start: counted
    act(moderately, "email_click", 89)
    act(moderately, "email_click", 89)
    act(moderately, "email_open", 90, seconds=-1)  # one second before the window
    act(stale, "email_open", 91)

    compute_metrics(as_of=T)

    assert metrics_of(highly).email_engagement_level == "highly_engaged"
    assert metrics_of(moderately).email_engagement_level == "moderately_engaged"
    assert metrics_of(stale).email_engagement_level == "disengaged"


def test_web_level_counts_site_visits_and_page_views_in_thirty_days():
    active, engaged, dormant = ContactFactory.create_batch(3)
    for _ in range(4):
        act(active, "site_visit", 30)  # boundary: counted
        act(active, "page_view", 2)
    act(engaged, "site_visit", 1)
    act(engaged, "email_open", 1)
    act(dormant, "page_view", 30, seconds=-1)

    compute_metrics(as_of=T)

    assert metrics_of(active).web_activity_level == "active"
    assert metrics_of(engaged).web_activity_level == "engaged"
    assert metrics_of(dormant).web_activity_level == "dormant"


def test_future_activities_are_ignored_and_reported():
    contact = ContactFactory()
    act(contact, "page_view", 0)  # exactly at as_of: counted
    act(contact, "demo_request", 0, seconds=1)
    act(contact, "purchase", -3, value=100)

    summary = compute_metrics(as_of=T)

    metrics = metrics_of(contact)
    assert (metrics.activity_count, metrics.engagement_score, metrics.monetary) == (1, 1.0, 0)
    assert (summary.activities_counted, summary.future_activities_ignored, summary.contacts) == (1, 2, 1)
    run = MetricsRun.objects.get()
    assert (run.as_of, run.full, run.future_activities_ignored, run.activities_counted) == (T, True, 2, 1)
    assert run.scoring_version == ScoringModel.objects.get_active().current_version


def test_recomputing_is_idempotent_one_row_per_contact():
    contacts = ContactFactory.create_batch(3)
    act(contacts[0], "page_view", 3, topic="security")
    compute_metrics(as_of=T)
    first = list(ContactMetrics.objects.order_by("contact").values())

    compute_metrics(as_of=T)

    assert list(ContactMetrics.objects.order_by("contact").values()) == first
    assert ContactMetrics.objects.count() == 3


def test_recomputing_one_contact_ranks_it_like_a_full_run():
    contacts = ContactFactory.create_batch(6)
    for index, contact in enumerate(contacts):
        for _ in range(index):
            act(contact, "page_view", index, topic="security")
    act(contacts[0], "purchase", 5, value=10)
    act(contacts[3], "purchase", 50, value=30)
    compute_metrics(as_of=T)
    act(contacts[1], "demo_request", 0, product="vault")
    act(contacts[1], "purchase", 1, value=20)

    summary = compute_metrics(as_of=T, contact_ids=[contacts[1].id])
    incremental = ContactMetrics.objects.filter(contact=contacts[1]).values().get()
    compute_metrics(as_of=T)
    full = ContactMetrics.objects.filter(contact=contacts[1]).values().get()

    assert incremental == full
    assert (summary.full, summary.contacts, summary.activities_counted) == (False, 1, 3)
    assert full["engagement_level"] == "highly_engaged"


def test_recomputing_several_contacts_with_ties_ranks_them_like_a_full_run():
    contacts = ContactFactory.create_batch(10)
    for index, contact in enumerate(contacts):
        # Pairs share every raw measure (ties in score, past score, recency, frequency, value).
        for _ in range(index // 2):
            act(contact, "page_view", 70 + index // 2, topic="security")
        if index % 3:
            act(contact, "purchase", 10 * (index // 2), value=10 * (index % 4))
    compute_metrics(as_of=T)
    touched = [contacts[0], contacts[3], contacts[4], contacts[9]]
    act(contacts[0], "purchase", 2, value=5)
    act(contacts[3], "page_view", 65)
    act(contacts[4], "email_click", 1)
    act(contacts[9], "purchase", 40, value=10)

    compute_metrics(as_of=T, contact_ids=[contact.id for contact in touched])
    incremental = list(ContactMetrics.objects.filter(contact__in=touched).order_by("contact").values())
    compute_metrics(as_of=T)
    full = list(ContactMetrics.objects.filter(contact__in=touched).order_by("contact").values())

    assert incremental == full
    assert {row["rfv_cell"] for row in full} - {""}
    assert any(row["recently_disengaged"] for row in ContactMetrics.objects.values("recently_disengaged"))


def test_the_number_of_queries_does_not_grow_with_contacts():
    def queries_for(count: int) -> int:
        for contact in ContactFactory.create_batch(count):
            act(contact, "page_view", 1, topic="security", product="vault")
        with CaptureQueriesContext(connection) as captured:
            compute_metrics(as_of=T)
        return len(captured)

    ScoringModel.objects.get_active()  # created on first use; not part of what is measured
    assert queries_for(2) == queries_for(40)
