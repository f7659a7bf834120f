"""explain(): why a contact is (not) selected, node by node, with the contact's own values."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from segments.models import Membership, Segment
from segments.rules.explainer import explain
from segments.rules.registry import get_fields
from segments.rules.validation import InvalidRule
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory, SegmentFactory

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

RULE = {
    "all": [
        {"field": "company.employee_count", "op": "gte", "value": 250},
        {
            "any": [
                {"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]},
                {
                    "event": {"kind": "email_click", "topic": "cloud-migration"},
                    "op": "count_gte",
                    "value": 3,
                    "within_days": 30,
                },
            ]
        },
        {"not": {"in_segment": "active-customers"}},
        {"field": "lead_score", "op": "top_percent", "value": 50},
    ]
}


@pytest.fixture
def lead(db):
    SegmentFactory(slug="active-customers")
    contact = ContactFactory(
        first_name="Lea", company=CompanyFactory(employee_count=1200), lifecycle_stage="lead", lead_score=80
    )
    ContactFactory(lead_score=10)
    for days in (1, 2, 3):
        ActivityFactory(
            contact=contact, kind="email_click", topic="Cloud-Migration", occurred_at=NOW - timedelta(days=days)
        )
    return contact


def test_the_tree_holds_every_node_with_the_contacts_values(lead):
    explanation = explain(RULE, lead, now=NOW)
    assert explanation.result is True
    tree = explanation.to_dict()["tree"]
    assert [child["text"] for child in tree["children"]] == [
        "Company employee count is at least 250: 1,200",
        "Any of these holds",
        "Not",
        "Lead score is in the top 50%: 80, threshold 80",
    ]
    any_node = tree["children"][1]
    assert [(c["path"], c["result"], c["value"]) for c in any_node["children"]] == [
        ("all[1].any[0]", False, "lead"),
        ("all[1].any[1]", True, {"count": 3}),
    ]
    clicks = "Email click about “cloud-migration” at least 3 times in the last 30 days"
    assert any_node["children"][1]["label"] == clicks
    assert tree["children"][2]["children"][0] == {
        "path": "all[2].not",
        "kind": "in_segment",
        "label": "Member of active-customers",
        "result": False,
        "value": "not a member",
        "text": "Member of active-customers: no",
        "children": [],
    }


def test_reasons_list_the_conditions_that_hold(lead):
    explanation = explain(RULE, lead, now=NOW)
    assert explanation.reasons() == [
        "Company employee count is at least 250: 1,200",
        "Email click about “cloud-migration” at least 3 times in the last 30 days: 3 found",
        "Not: Member of active-customers: no",
        "Lead score is in the top 50%: 80, threshold 80",
    ]
    assert explanation.summary().startswith("Matches: Company employee count is at least 250: 1,200; Email click")


def test_a_contact_that_stopped_matching_is_told_which_condition_failed(lead):
    Membership.objects.create(segment=Segment.objects.get(slug="active-customers"), contact=lead)
    explanation = explain(RULE, lead, now=NOW)
    assert explanation.result is False
    assert explanation.reasons() == []
    assert explanation.summary() == "Does not match: excluded because Member of active-customers: yes"
    assert explanation.to_dict()["tree"]["children"][2]["children"][0]["value"] == "member"


def test_missing_values_are_shown_and_make_conditions_false(db):
    contact = ContactFactory(company=None, lifetime_value=None)
    rule = {
        "any": [
            {"field": "company.employee_count", "op": "lt", "value": 10},
            {"not": {"field": "lifetime_value", "op": "gte", "value": 1}},
        ]
    }
    explanation = explain(rule, contact, now=NOW)
    assert [str(child) for child in explanation.root.children] == [
        "Company employee count is less than 10: no value",
        "Not",
    ]
    assert explanation.reasons() == ["Not: Lifetime value is at least 1: no value"]


def test_sum_conditions_show_the_sum(db):
    contact = ContactFactory()
    ActivityFactory(contact=contact, kind="purchase", value=Decimal("10.10"), occurred_at=NOW - timedelta(days=1))
    ActivityFactory(contact=contact, kind="purchase", value=None, occurred_at=NOW - timedelta(days=1))
    node = explain({"event": {"kind": "purchase"}, "op": "sum_gte", "value": 10}, contact, now=NOW).root
    assert node.result is True
    assert node.to_dict()["value"] == {"count": 2, "sum": "10.1"}


def test_explaining_costs_a_bounded_number_of_queries(lead, django_assert_num_queries):
    for day in range(50):
        ActivityFactory(contact=lead, kind="email_click", occurred_at=NOW - timedelta(days=day, hours=1))
    fields = get_fields()
    # contact with company, activities, memberships, the top_percent threshold
    with django_assert_num_queries(4):
        explain(RULE, lead, now=NOW, fields=fields)


def test_an_invalid_rule_is_refused(db):
    with pytest.raises(InvalidRule, match=re.escape("all[0].field: unknown field 'nope'")):
        explain({"all": [{"field": "nope", "op": "eq", "value": 1}]}, ContactFactory(), now=NOW)
