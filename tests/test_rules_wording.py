"""Rules in plain words: one wording table for the pages, the explainer and the rule builder."""

import pytest

from segments.rule_builder import builder_catalog
from segments.rules.registry import get_fields
from segments.rules.wording import compare_rules, condition_text, rule_lines, rule_text, segment_names
from tests.factories import PropertyDefinitionFactory, SegmentFactory

pytestmark = pytest.mark.django_db

RULE = {
    "all": [
        {"field": "company.employee_count", "op": "gte", "value": 1000},
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
        {"field": "metrics.engagement_score", "op": "bottom_percent", "value": 40},
        {
            "not": {
                "any": [
                    {"field": "do_not_contact", "op": "is_true"},
                    {"field": "email", "op": "ends_with", "value": "@example.com"},
                ]
            }
        },
    ]
}


def test_a_rule_reads_as_an_indented_tree_with_labels_and_segment_names():
    SegmentFactory(slug="active-customers", name="Active customers")
    text = rule_text(RULE, fields=get_fields(), segment_names=segment_names(RULE))
    assert text == "\n".join(
        [
            "All of these hold:",
            "  Company employee count is at least 1,000",
            "  Any of these holds:",
            "    Lifecycle stage is one of Marketing qualified lead or Sales qualified lead",
            "    Email click about “cloud-migration” at least 3 times in the last 30 days",
            "  Not: Member of Active customers",
            "  Engagement score is in the bottom 40%",
            "  None of these holds:",
            "    Do not contact is yes",
            "    Email ends with “@example.com”",
        ]
    )
    assert [line.path for line in rule_lines(RULE, fields=get_fields())][:3] == ["", "all[0]", "all[1]"]


@pytest.mark.parametrize(
    ("condition", "words"),
    [
        ({"field": "lead_score", "op": "between", "value": [10, 20.5]}, "Lead score is between 10 and 20.5"),
        ({"field": "customer_since", "op": "before", "value": "2026-01-03"}, "Customer since is before 3 Jan 2026"),
        ({"field": "renewal_date", "op": "in_next_days", "value": 90}, "Renewal date is in the next 90 days"),
        (
            {"field": "technologies", "op": "contains_all", "value": ["aws", "k8s"]},
            "Technologies includes all of “aws” and “k8s”",
        ),
        ({"field": "phone", "op": "is_not_set"}, "Phone is not set"),
        ({"field": "email_status", "op": "neq", "value": "bounced"}, "Email status is not Bounced"),
        (
            {"event": {"kind": "purchase"}, "op": "sum_gte", "value": 1500},
            "Purchase worth at least 1,500 in total (all time)",
        ),
        (
            {"event": {"kind": "page_view", "url_contains": "/pricing"}, "op": "not_performed", "within_days": 14},
            "No page view on a page whose address contains “/pricing” in the last 14 days",
        ),
        ({"field": "nope", "op": "gte", "value": 3}, "nope is at least 3"),  # an invalid rule still reads
    ],
)
def test_each_kind_of_condition_has_words(condition, words):
    assert condition_text(condition, fields=get_fields()) == words


def test_a_custom_property_reads_with_its_label():
    PropertyDefinitionFactory(key="plan", label="Plan", type="text")
    assert condition_text({"field": "props.plan", "op": "eq", "value": "pro"}, fields=get_fields()) == "Plan is “pro”"


def test_two_versions_compare_line_by_line():
    old = {"all": [{"field": "lead_score", "op": "gte", "value": 50}, {"field": "country", "op": "eq", "value": "DE"}]}
    new = {
        "all": [
            {"field": "lead_score", "op": "gte", "value": 60},
            {"field": "country", "op": "eq", "value": "DE"},
            {"field": "phone", "op": "is_set"},
        ]
    }
    rows = compare_rules(old, new, fields=get_fields())
    assert [(r.before and r.before.text, r.after and r.after.text, r.change) for r in rows] == [
        ("All of these hold:", "All of these hold:", "same"),
        ("Lead score is at least 50", "Lead score is at least 60", "changed"),
        ("Country is “DE”", "Country is “DE”", "same"),
        (None, "Phone is set", "added"),
    ]
    created = compare_rules(None, old, fields=get_fields())
    assert {row.change for row in created} == {"added"}


def test_the_builder_reads_the_same_table_and_shows_choice_labels():
    catalog = builder_catalog()
    assert catalog["operator_words"]["gte"] == "is at least …"
    assert catalog["operator_words"]["between"] == "is between … and …"
    assert catalog["operator_words"]["count_gte"] == "at least … times"
    assert catalog["operator_words"]["not_performed"] == "never"
    stage = next(f for layer in catalog["layers"] for f in layer["fields"] if f["path"] == "lifecycle_stage")
    assert dict(zip(stage["choices"], stage["choice_labels"], strict=True))["mql"] == "Marketing qualified lead"
