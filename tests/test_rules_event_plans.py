"""The plan of an event condition does not hang on planner statistics (PostgreSQL).

A condition that holds for contacts without activity (count_lte, not_performed, count_eq 0, a
sum_gte of 0 or less) and `not` around any event condition compile to NOT EXISTS over the grouped
set of contacts, which PostgreSQL runs as an anti-join whether or not the tables were analysed;
before, such a condition was a subquery run once per contact, and on a freshly loaded activity
table the planner probed the (kind, occurred_at) index for each one (seconds at 3,000 contacts).
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from contacts.models import Activity, ActivityTally, Contact
from contacts.table_statistics import analyze
from segments.rules.compiler import matching_contacts
from tests.table_stats import forget_statistics, plan

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="plans are PostgreSQL's")

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CLOUD_VIEWS = {"kind": "page_view", "topic": "Cloud-Migration"}


def views(op: str, value=None, **extra) -> dict:
    rule = {"event": CLOUD_VIEWS, "op": op, **extra}
    return rule if value is None else {**rule, "value": value}


HOLD_WITHOUT_ACTIVITY = {
    "count_lte in a window (issue 16)": views("count_lte", 1, within_days=180),
    "not_performed": views("not_performed", within_days=30),
    "count_eq 0": views("count_eq", 0),
    "sum_gte 0": {"event": {"kind": "purchase"}, "op": "sum_gte", "value": 0},
    "all-time count_lte of one kind (tally)": {"event": {"kind": "page_view"}, "op": "count_lte", "value": 3},
    "not count_gte": {"not": views("count_gte", 2, within_days=180)},
    "not performed": {"not": views("performed")},
    "not count_eq 1": {"not": views("count_eq", 1, within_days=90)},
    "not sum_gte": {"not": {"event": {"kind": "purchase", "product": "vault"}, "op": "sum_gte", "value": 10}},
    "not of any": {
        "not": {"any": [views("performed"), {"event": {"kind": "email_click"}, "op": "count_gte", "value": 3}]}
    },
    "beside a property": {"all": [{"field": "lead_score", "op": "gte", "value": 10}, views("count_lte", 1)]},
}
NEED_ACTIVITY = {
    "count_gte": views("count_gte", 2, within_days=180),
    "performed": views("performed"),
    "not count_lte": {"not": views("count_lte", 1, within_days=180)},
    "not not_performed (tally)": {"not": {"event": {"kind": "page_view"}, "op": "not_performed"}},
}


@pytest.fixture
def stream(db) -> None:
    """400 contacts, a quarter without activity, the others with page views (a few on cloud migration)."""
    people = Contact.objects.bulk_create(Contact(email=f"p{i}@example.com", lead_score=i % 50) for i in range(400))
    Activity.objects.bulk_create(
        Activity(
            contact=person,
            kind="page_view",
            topic="Cloud-Migration" if j % 3 == 0 else "security",
            occurred_at=NOW - timedelta(days=7 * j),
        )
        for i, person in enumerate(people)
        if i % 4
        for j in range(i % 9)
    )


def plans(rule: dict) -> tuple[str, str]:
    """The rule's plan on tables as freshly loaded (no statistics), then once analysed."""
    contacts = matching_contacts(rule, now=NOW).values("pk")
    forget_statistics(Contact, Activity, ActivityTally)
    blind = plan(contacts)
    analyze(Contact, Activity, ActivityTally)
    return blind, plan(contacts)


@pytest.mark.parametrize("rule", HOLD_WITHOUT_ACTIVITY.values(), ids=HOLD_WITHOUT_ACTIVITY)
def test_conditions_that_hold_without_activity_are_anti_joins_with_or_without_statistics(stream, rule):
    for shown in plans(rule):
        assert "Anti Join" in shown, shown
        assert "SubPlan" not in shown, shown


@pytest.mark.parametrize("rule", NEED_ACTIVITY.values(), ids=NEED_ACTIVITY)
def test_conditions_that_need_activity_are_joins_with_or_without_statistics(stream, rule):
    for shown in plans(rule):
        assert "Join" in shown or "Nested Loop" in shown, shown  # a semi-join, or a join with the unique set
        assert "SubPlan" not in shown, shown
