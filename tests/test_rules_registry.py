"""The field registry: contact, company, owner, custom property and metric fields with their operators."""

import pytest

from segments.rules import registry
from segments.rules.registry import Field, get_fields, operators_for
from tests.factories import PropertyDefinitionFactory


def test_contact_company_and_owner_fields_are_registered(db):
    fields = get_fields()
    assert fields["lifecycle_stage"].type == "choice"
    assert "mql" in fields["lifecycle_stage"].choices
    assert fields["seniority"].layer == "firmographic"
    assert fields["lifecycle_changed_at"].type == "datetime"
    assert fields["renewal_date"].type == "date"
    assert fields["interests"].type == "tags"
    assert fields["do_not_contact"].type == "bool"
    assert fields["company.employee_count"].lookup == "company__employee_count"
    assert fields["company.technologies"].layer == "technographic"
    assert fields["owner.username"].lookup == "owner__username"
    assert fields["country"].layer == "geographic"


def test_property_definitions_become_fields_at_call_time(db):
    assert "props.plan" not in get_fields()
    PropertyDefinitionFactory(key="plan", label="Plan", type="choice", choices=["free", "pro"], layer="value")
    field = get_fields()["props.plan"]
    assert field == Field(
        path="props.plan",
        label="Plan",
        type="choice",
        layer="value",
        lookup="properties",
        choices=("free", "pro"),
        property_key="plan",
    )


def test_adding_a_metric_field_is_all_it_takes(db, monkeypatch):
    metric = Field("metrics.engagement_score", "Engagement score", "number", "behavioral", "metrics__engagement_score")
    monkeypatch.setattr(registry, "METRIC_FIELDS", [metric])
    assert get_fields()["metrics.engagement_score"] is metric


@pytest.mark.parametrize(
    ("type", "operators"),
    [
        ("text", ("eq", "neq", "in", "not_in", "contains", "starts_with", "ends_with", "is_set", "is_not_set")),
        (
            "number",
            (
                "eq",
                "neq",
                "gt",
                "gte",
                "lt",
                "lte",
                "between",
                "top_percent",
                "bottom_percent",
                "is_set",
                "is_not_set",
            ),
        ),
        ("bool", ("is_true", "is_false", "is_set", "is_not_set")),
        ("choice", ("eq", "neq", "in", "not_in", "is_set", "is_not_set")),
        (
            "date",
            (
                "before",
                "after",
                "between",
                "in_last_days",
                "in_next_days",
                "more_than_days_ago",
                "is_set",
                "is_not_set",
            ),
        ),
        ("tags", ("contains_any", "contains_all", "contains_none", "is_set", "is_not_set")),
    ],
)
def test_operators_per_type_follow_the_design(type, operators):
    assert operators_for(type) == operators
    assert operators_for("datetime") == operators_for("date")


def test_get_fields_costs_two_queries(db, django_assert_num_queries):
    # The property definitions and the propensity models (whose scores are metrics.propensity_*).
    with django_assert_num_queries(2):
        get_fields()


def test_get_fields_without_properties_costs_no_query(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        get_fields(properties=False)
