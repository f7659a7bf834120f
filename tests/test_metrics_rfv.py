"""Recency, frequency, value: raw measures, 1–5 scores with ties, named cells."""

from datetime import UTC, datetime, timedelta

import pytest

from contacts.metrics.compute import compute_metrics
from contacts.models import ContactMetrics, ScoringModel
from tests.factories import ActivityFactory, ContactFactory

T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def act(contact, kind, days_ago=0, *, seconds=0, **fields):
    occurred_at = T - timedelta(days=days_ago) + timedelta(seconds=seconds)
    return ActivityFactory(contact=contact, kind=kind, occurred_at=occurred_at, **fields)


def rfv(contact) -> tuple:
    m = ContactMetrics.objects.get(contact=contact)
    return (m.recency_days, m.frequency, m.monetary, m.r_score, m.f_score, m.v_score, m.rfv_cell)


@pytest.fixture
def buyers():
    """Five buyers and one contact who never bought, with scores worked out in the tests."""
    p1, p2, p3, p4, p5, browser = ContactFactory.create_batch(6)
    act(p1, "purchase", 1, value=100)
    act(p1, "purchase", 10, value=50)
    act(p2, "purchase", 1, seconds=-3600, value=100)  # 1 day 1 hour ago: still 1 whole day
    act(p3, "purchase", 100, value=20)
    act(p4, "purchase", 365, value=500)  # exactly on the 365-day frequency window: counted
    act(p5, "purchase", 366)  # no value; outside the frequency window
    act(browser, "page_view", 1)
    return p1, p2, p3, p4, p5, browser


def test_rfv_raw_measures_scores_and_cells(buyers):
    p1, p2, p3, p4, p5, browser = buyers

    compute_metrics(as_of=T)

    # recency desc [366, 365, 100, 1, 1] -> 1, 2, 3, 5, 5 (ties share ceil(5 * 5/5));
    # frequency asc [0, 1, 1, 1, 2] -> 1, 4, 4, 4, 5; value asc [0, 20, 100, 150, 500] -> 1..5.
    assert rfv(p1) == (1, 2, 150, 5, 5, 4, "champions")
    assert rfv(p2) == (1, 1, 100, 5, 4, 3, "loyal")
    assert rfv(p3) == (100, 1, 20, 3, 4, 2, "loyal")
    assert rfv(p4) == (365, 1, 500, 2, 4, 5, "at_risk")
    assert rfv(p5) == (366, 0, 0, 1, 1, 1, "hibernating")
    assert rfv(browser) == (None, 0, 0, None, None, None, "")


def test_frequency_window_zero_counts_all_time(buyers):
    p1, *_, p5, _browser = buyers
    model = ScoringModel.objects.get_active()
    model.rfv_frequency_window_days = 0
    model.save_version()

    compute_metrics(as_of=T)

    assert rfv(p5)[:2] == (366, 1)
    # frequency asc [1, 1, 1, 1, 2]: four tied at ceil(5 * 4/5) = 4
    assert (rfv(p1)[4], rfv(p5)[4]) == (5, 4)


def test_counted_kinds_are_a_setting():
    buyer, visitor = ContactFactory.create_batch(2)
    act(buyer, "purchase", 3, value=10)
    act(visitor, "site_visit", 2)
    act(visitor, "site_visit", 40)
    model = ScoringModel.objects.get_active()
    model.rfv_kinds = ["purchase", "site_visit"]
    model.save_version()

    compute_metrics(as_of=T)

    # two counted contacts: ceil(5 * 1/2) = 3 for the lower one, 5 for the higher one
    assert rfv(visitor) == (2, 2, 0, 5, 5, 3, "loyal")
    assert rfv(buyer) == (3, 1, 10, 3, 3, 5, "needs_attention")


def test_cells_for_recent_and_lapsed_buyers():
    # (days since purchase, purchases of 10 each): R by recency, F and V by count, all distinct
    plan = {"a": (200, 1), "b": (150, 4), "c": (100, 5), "d": (50, 3), "e": (0, 2)}
    contacts = {}
    for name, (days_ago, purchases) in plan.items():
        contacts[name] = ContactFactory()
        for _ in range(purchases):
            act(contacts[name], "purchase", days_ago, value=10)

    compute_metrics(as_of=T)

    cells = {name: rfv(contact)[3:] for name, contact in contacts.items()}
    assert cells == {
        "a": (1, 1, 1, "hibernating"),
        "b": (2, 4, 4, "at_risk"),
        "c": (3, 5, 5, "loyal"),
        "d": (4, 3, 3, "promising"),
        "e": (5, 2, 2, "new"),
    }
