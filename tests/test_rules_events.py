"""Event conditions: activity filters, windows at their exact boundaries, counts and sums."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from contacts.models import Contact
from segments.rules.compiler import matching_contacts
from tests.factories import ActivityFactory, ContactFactory
from tests.rule_checks import selected

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)


def names(rule: dict) -> set[str]:
    return set(selected(rule, now=NOW))


def scoped_names(rule: dict) -> set[str]:
    """The same rule evaluated for an explicit list of contacts (the refresh_contacts path)."""
    everyone = list(Contact.objects.values_list("pk", flat=True))
    return set(matching_contacts(rule, now=NOW, contact_ids=everyone).values_list("first_name", flat=True))


def clicks(op: str, value=None, *, within_days=None, **filters) -> dict:
    rule = {"event": {"kind": "email_click", **filters}, "op": op}
    if value is not None:
        rule["value"] = value
    if within_days is not None:
        rule["within_days"] = within_days
    return rule


@pytest.fixture
def clickers(db):
    a = ContactFactory(first_name="a")
    for moment in [NOW - 30 * DAY, NOW - 30 * DAY - MICROSECOND, NOW, NOW + MICROSECOND, NOW - DAY]:
        ActivityFactory(contact=a, kind="email_click", topic="Cloud-Migration", occurred_at=moment)
    b = ContactFactory(first_name="b")
    ActivityFactory(contact=b, kind="email_click", topic="security", occurred_at=NOW - DAY)
    ActivityFactory(contact=b, kind="page_view", topic="cloud-migration", occurred_at=NOW - DAY)
    ContactFactory(first_name="c")


CLICK_CASES = [
    (clicks("performed", topic="CLOUD-migration", within_days=30), {"a"}),
    (clicks("performed", topic="cloud-migration"), {"a"}),
    (clicks("performed"), {"a", "b"}),
    (clicks("not_performed", topic="cloud-migration", within_days=30), {"b", "c"}),
    (clicks("count_gte", 3, topic="cloud-migration", within_days=30), {"a"}),
    (clicks("count_gte", 4, topic="cloud-migration", within_days=30), set()),
    (clicks("count_gte", 4, topic="cloud-migration"), {"a"}),
    (clicks("count_gte", 5, topic="cloud-migration"), set()),
    (clicks("count_gte", 1), {"a", "b"}),
    (clicks("count_gte", 0), {"a", "b", "c"}),
    (clicks("count_eq", 3, topic="cloud-migration", within_days=30), {"a"}),
    (clicks("count_eq", 0, topic="cloud-migration", within_days=30), {"b", "c"}),
    (clicks("count_eq", 1, within_days=1), {"b"}),
    (clicks("count_eq", 2, within_days=1), {"a"}),
    (clicks("count_lte", 1, topic="cloud-migration"), {"b", "c"}),
    (clicks("count_lte", 0), {"c"}),
    (clicks("count_lte", 4), {"a", "b", "c"}),
    ({"not": clicks("count_gte", 3, topic="cloud-migration", within_days=30)}, {"b", "c"}),
    ({"not": clicks("count_lte", 1, topic="cloud-migration")}, {"a"}),
    # Under any/not as at the top, EXISTS or NOT EXISTS over the grouped set: the same answers.
    ({"any": [clicks("count_gte", 3, topic="cloud-migration", within_days=30), clicks("count_gte", 9)]}, {"a"}),
    ({"any": [clicks("count_eq", 1, within_days=1), clicks("count_gte", 9)]}, {"b"}),
    ({"all": [clicks("count_eq", 1, within_days=1), clicks("count_gte", 1)]}, {"b"}),
    ({"event": {"kind": "page_view", "topic": "Cloud-Migration"}, "op": "performed"}, {"b"}),
]


@pytest.mark.parametrize(("rule", "expected"), CLICK_CASES)
def test_event_counts_include_both_window_ends_and_never_the_future(clickers, rule, expected):
    assert names(rule) == expected
    assert scoped_names(rule) == expected


@pytest.mark.parametrize(("rule", "expected"), CLICK_CASES)
def test_not_of_an_event_condition_selects_every_other_contact(clickers, rule, expected):
    assert names({"not": rule}) == {"a", "b", "c"} - expected
    assert scoped_names({"not": rule}) == {"a", "b", "c"} - expected


@pytest.fixture
def shoppers(db):
    a = ContactFactory(first_name="a")
    ActivityFactory(
        contact=a,
        kind="purchase",
        product="Vault",
        campaign="Spring-Sale",
        url="https://shop.example/checkout?discount=100%",
        value=Decimal("10.10"),
        occurred_at=NOW - DAY,
    )
    ActivityFactory(contact=a, kind="purchase", product="vault", value=Decimal("20.20"), occurred_at=NOW - 2 * DAY)
    ActivityFactory(contact=a, kind="purchase", product="VAULT", value=None, occurred_at=NOW - 3 * DAY)
    b = ContactFactory(first_name="b")
    ActivityFactory(contact=b, kind="purchase", product="Other", value=Decimal("-50.00"), occurred_at=NOW - DAY)
    ContactFactory(first_name="c")


SHOPPING_CASES = [
    ({"event": {"kind": "purchase", "product": "VAULT"}, "op": "count_eq", "value": 3}, {"a"}),
    ({"event": {"kind": "purchase", "campaign": "spring-sale"}, "op": "performed"}, {"a"}),
    ({"event": {"kind": "purchase", "url_contains": "=100%"}, "op": "performed"}, {"a"}),
    ({"event": {"kind": "purchase", "url_contains": "1%0"}, "op": "performed"}, set()),
    ({"event": {"kind": "purchase", "url_contains": "DISCOUNT_"}, "op": "performed"}, set()),
    ({"event": {"kind": "purchase", "url_contains": "SHOP.example"}, "op": "performed"}, {"a"}),
    ({"event": {"kind": "purchase"}, "op": "sum_gte", "value": 30.3}, {"a"}),
    ({"event": {"kind": "purchase"}, "op": "sum_gte", "value": 30.31}, set()),
    ({"event": {"kind": "purchase"}, "op": "sum_gte", "value": 10.1, "within_days": 1}, {"a"}),
    ({"event": {"kind": "purchase"}, "op": "sum_gte", "value": 10.11, "within_days": 1}, set()),
    ({"event": {"kind": "purchase"}, "op": "sum_gte", "value": 0}, {"a", "c"}),
    ({"event": {"kind": "purchase"}, "op": "sum_gte", "value": -50}, {"a", "b", "c"}),
    ({"not": {"event": {"kind": "purchase"}, "op": "sum_gte", "value": 1}}, {"b", "c"}),
    ({"any": [{"event": {"kind": "purchase"}, "op": "sum_gte", "value": 30.3}, {"in_segment": "none"}]}, {"a"}),
]


@pytest.mark.parametrize(("rule", "expected"), SHOPPING_CASES)
def test_event_filters_ignore_case_and_sums_treat_no_activity_as_zero(shoppers, rule, expected):
    assert names(rule) == expected
    assert scoped_names(rule) == expected


@pytest.mark.parametrize(("rule", "expected"), SHOPPING_CASES)
def test_not_of_a_filtered_event_condition_selects_every_other_contact(shoppers, rule, expected):
    assert names({"not": rule}) == {"a", "b", "c"} - expected
    assert scoped_names({"not": rule}) == {"a", "b", "c"} - expected


def test_an_event_rule_is_one_statement(clickers, django_assert_num_queries):
    rule = {
        "any": [
            clicks("count_gte", 3, topic="cloud-migration", within_days=30),
            {"event": {"kind": "purchase"}, "op": "sum_gte", "value": 5},
        ]
    }
    contacts = matching_contacts(rule, now=NOW)
    with django_assert_num_queries(1):
        assert {c.first_name for c in contacts} == {"a"}
