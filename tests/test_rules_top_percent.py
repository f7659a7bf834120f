"""top_percent / bottom_percent: a rank among contacts with a set value, ties going in together."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from segments.rules.compiler import matching_contacts
from tests.factories import CompanyFactory, ContactFactory, PropertyDefinitionFactory
from tests.rule_checks import selected

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SCORES = [100, 90, 90, 80, 70, 60, 50, 40, 30, 20]


def scores(rule: dict) -> list[int]:
    return sorted(selected(rule, now=NOW, attribute="lead_score"), reverse=True)


@pytest.fixture
def ranked(db):
    for score in SCORES:
        ContactFactory(lead_score=score)


@pytest.mark.parametrize(
    ("op", "percent", "expected"),
    [
        ("top_percent", 10, [100]),
        ("top_percent", 10.01, [100, 90, 90]),
        ("top_percent", 15, [100, 90, 90]),
        ("top_percent", 20, [100, 90, 90]),
        ("top_percent", 30, [100, 90, 90]),
        ("top_percent", 30.01, [100, 90, 90, 80]),
        ("top_percent", 100, SCORES),
        ("top_percent", 0.01, [100]),
        ("bottom_percent", 10, [20]),
        ("bottom_percent", 20, [30, 20]),
        ("bottom_percent", 70, [80, 70, 60, 50, 40, 30, 20]),
        ("bottom_percent", 80, [90, 90, 80, 70, 60, 50, 40, 30, 20]),
    ],
)
def test_fewer_than_p_percent_rank_strictly_above(ranked, op, percent, expected):
    assert scores({"field": "lead_score", "op": op, "value": percent}) == expected


def test_not_top_percent_is_everyone_else(ranked):
    assert scores({"not": {"field": "lead_score", "op": "top_percent", "value": 20}}) == SCORES[3:]


def names(rule: dict) -> set[str]:
    return set(selected(rule, now=NOW))


def test_missing_values_are_neither_counted_nor_ranked(db):
    for name, value in [("n1", None), ("n2", None), ("v10", "10"), ("v20", "20"), ("v30", "30"), ("v40", "40")]:
        ContactFactory(first_name=name, lifetime_value=Decimal(value) if value else None)
    assert names({"field": "lifetime_value", "op": "top_percent", "value": 25}) == {"v40"}
    assert names({"field": "lifetime_value", "op": "top_percent", "value": 50}) == {"v30", "v40"}
    assert names({"field": "lifetime_value", "op": "bottom_percent", "value": 50}) == {"v10", "v20"}
    assert names({"not": {"field": "lifetime_value", "op": "top_percent", "value": 25}}) == {
        "n1",
        "n2",
        "v10",
        "v20",
        "v30",
    }


def test_company_values_rank_over_contacts(db):
    big = CompanyFactory(employee_count=5000)
    ContactFactory(first_name="big1", company=big)
    ContactFactory(first_name="big2", company=big)
    ContactFactory(first_name="mid", company=CompanyFactory(employee_count=500))
    ContactFactory(first_name="small", company=CompanyFactory(employee_count=5))
    ContactFactory(first_name="none", company=None)
    # Two of four contacts with a set value share the top value: 50% holds both, 25% too (ties go in).
    assert names({"field": "company.employee_count", "op": "top_percent", "value": 25}) == {"big1", "big2"}
    assert names({"field": "company.employee_count", "op": "bottom_percent", "value": 25}) == {"small"}


def test_custom_number_properties_rank_too(db):
    PropertyDefinitionFactory(key="seats", type="number")
    for name, seats in [("a", 1), ("b", 2.5), ("c", 40), ("d", "forty"), ("e", None)]:
        ContactFactory(first_name=name, properties={"seats": seats})
    ContactFactory(first_name="f", properties={})
    assert names({"field": "props.seats", "op": "top_percent", "value": 34}) == {"b", "c"}
    assert names({"field": "props.seats", "op": "bottom_percent", "value": 33.33}) == {"a"}


def test_nobody_is_in_the_top_percent_of_nothing(db):
    ContactFactory(first_name="a", lifetime_value=None)
    assert names({"field": "lifetime_value", "op": "top_percent", "value": 50}) == set()
    assert names({"not": {"field": "lifetime_value", "op": "top_percent", "value": 50}}) == {"a"}


def test_top_percent_is_one_statement(ranked, django_assert_num_queries):
    contacts = matching_contacts({"field": "lead_score", "op": "top_percent", "value": 20}, now=NOW)
    with django_assert_num_queries(1):
        assert len(list(contacts)) == 3
