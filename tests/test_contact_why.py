"""The short "why" on the contact page: the conditions that hold, in words, with the contact's values."""

from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.models import ActivityKind
from segments.models import Membership
from segments.rules.explainer import explain
from segments.rules.registry import get_fields
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def why(rule: dict, contact) -> list[str]:
    return explain(rule, contact, now=timezone.now(), fields=get_fields()).reasons()


def test_it_names_only_the_conditions_that_hold_in_an_any_group():
    contact = ContactFactory(lifecycle_stage="sql", company=CompanyFactory(employee_count=1200))
    rule = {
        "any": [
            {"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]},
            {"field": "company.employee_count", "op": "between", "value": [1, 50]},
            {"field": "company.employee_count", "op": "gte", "value": 1000},
        ]
    }
    assert why(rule, contact) == [
        "Lifecycle stage is one of Marketing qualified lead or Sales qualified lead: Sales qualified lead",
        "Company employee count is at least 1,000: 1,200",
    ]


def test_it_words_not_membership_and_events():
    base = SegmentFactory(slug="customers", rule={"field": "lead_score", "op": "gte", "value": 0})
    contact = ContactFactory(do_not_contact=False)
    Membership.objects.create(segment=base, contact=contact)
    for days in (1, 2, 3):
        ActivityFactory(
            contact=contact,
            kind=ActivityKind.EMAIL_CLICK,
            topic="security",
            occurred_at=timezone.now() - timedelta(days=days),
        )
    rule = {
        "all": [
            {"not": {"field": "do_not_contact", "op": "is_true"}},
            {"in_segment": "customers"},
            {"event": {"kind": "email_click", "topic": "security"}, "op": "count_gte", "value": 3, "within_days": 30},
            {"event": {"kind": "support_ticket_opened"}, "op": "not_performed"},
        ]
    }
    assert why(rule, contact) == [
        "Not: Do not contact is yes: no",
        "Member of customers: yes",
        "Email click about “security” at least 3 times in the last 30 days: 3 found",
        "No support ticket opened (all time): 0 found",
    ]


def test_a_rule_that_does_not_hold_gives_no_reasons():
    contact = ContactFactory(lead_score=5)
    assert why({"field": "lead_score", "op": "gte", "value": 50}, contact) == []
