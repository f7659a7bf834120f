"""validate_rule: every error collected, each with its JSON path and what is allowed."""

import pytest

from segments.rules.validation import referenced_slugs, validate_rule
from tests.factories import PropertyDefinitionFactory, SegmentFactory


def errors(rule, **kwargs) -> list[tuple[str, str]]:
    return [(error.path, error.code) for error in validate_rule(rule, segment_slugs=set(), **kwargs)]


def only_message(rule) -> str:
    (error,) = validate_rule(rule, segment_slugs=set())
    return error.message


def test_a_valid_rule_has_no_errors(db):
    SegmentFactory(slug="active-customers")
    rule = {
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
            {"field": "lead_score", "op": "top_percent", "value": 20},
        ]
    }
    assert validate_rule(rule) == []


def test_every_error_is_collected_with_its_path(db):
    rule = {
        "all": [
            {"field": "email", "op": "eq", "value": "a@example.com"},
            {"any": [{"field": "city", "op": "gt", "value": 3}, {"field": "nope", "op": "eq", "value": 1}]},
            {"not": {"all": []}},
            "text",
            {"field": "lead_score", "op": "gte", "value": "high", "extra": 1},
        ]
    }
    assert errors(rule) == [
        ("all[1].any[0].op", "bad_operator"),
        ("all[1].any[1].field", "unknown_field"),
        ("all[2].not.all", "empty_group"),
        ("all[3]", "not_object"),
        ("all[4].extra", "unknown_key"),
        ("all[4].value", "bad_value"),
    ]


def test_a_wrong_operator_lists_the_allowed_ones(db):
    message = only_message({"field": "city", "op": "gt", "value": 3})
    assert message == (
        "operator 'gt' does not apply to text field 'city'; allowed: "
        "eq, neq, in, not_in, contains, starts_with, ends_with, is_set, is_not_set."
    )


def test_an_unknown_field_suggests_the_three_closest_not_every_field(db):
    message = only_message({"field": "company.employe_count", "op": "gte", "value": 3})
    assert message.startswith(
        "unknown field 'company.employe_count'. Did you mean 'company.employee_count' (Company employee count), "
    )
    assert message.count("'company.") == 4  # the field given and three suggestions
    assert "lifecycle_stage" not in message


def test_an_unknown_field_is_matched_by_its_label_too(db):
    message = only_message({"field": "lead score", "op": "gte", "value": 3})
    assert message.startswith("unknown field 'lead score'. Did you mean 'lead_score' (Lead score)")


def test_an_unknown_field_like_no_other_says_where_to_look(db):
    message = only_message({"field": "zzzqqq", "op": "gte", "value": 3})
    assert message == "unknown field 'zzzqqq'. No field has a similar name; the rule builder lists them all."


@pytest.mark.parametrize(
    "rule",
    [
        {"field": "lead_score", "op": "gte", "value": ""},
        {"field": "lead_score", "op": "between", "value": ["", 5]},
        {"field": "lead_score", "op": "top_percent", "value": ""},
        {"field": "created_at", "op": "in_last_days", "value": ""},
        {"event": {"kind": "email_open"}, "op": "count_gte", "value": ""},
    ],
)
def test_an_empty_number_asks_for_a_number(db, rule):
    assert only_message(rule) == "enter a number."


def test_a_property_definition_makes_its_field_valid_without_code(db):
    rule = {"field": "props.plan", "op": "eq", "value": "pro"}
    assert errors(rule) == [("field", "unknown_field")]
    PropertyDefinitionFactory(key="plan", type="text")
    assert errors(rule) == []


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"field": "city", "op": "in", "value": []}, "in takes a non-empty list of non-empty texts."),
        ({"field": "city", "op": "in", "value": "Berlin"}, "in takes a non-empty list of non-empty texts."),
        (
            {"field": "city", "op": "in", "value": ["Berlin", ""]},
            "item 1: expected a non-empty text (use is_set / is_not_set for presence).",
        ),
        (
            {"field": "city", "op": "eq", "value": ""},
            "expected a non-empty text (use is_set / is_not_set for presence).",
        ),
        ({"field": "city", "op": "eq"}, "eq needs a value."),
        ({"field": "city", "op": "is_set", "value": "x"}, "is_set takes no value."),
        ({"field": "lead_score", "op": "between", "value": [10]}, "between takes [low, high], both ends included."),
        (
            {"field": "lead_score", "op": "between", "value": [10, 5]},
            "between takes [low, high] with low <= high; got [10, 5].",
        ),
        (
            {"field": "lead_score", "op": "gte", "value": True},
            "expected a number between -1,000,000,000,000,000 and 1,000,000,000,000,000, got True.",
        ),
        (
            {"field": "seniority", "op": "eq", "value": "boss"},
            "'boss' is not one of entry, senior, manager, director, vp, cxo, owner.",
        ),
        (
            {"field": "seniority", "op": "in", "value": ["vp", "boss"]},
            "item 1: 'boss' is not one of entry, senior, manager, director, vp, cxo, owner.",
        ),
        (
            {"field": "renewal_date", "op": "before", "value": "2026-13-01"},
            "expected an ISO date YYYY-MM-DD, got '2026-13-01'.",
        ),
        (
            {"field": "renewal_date", "op": "before", "value": "2026-01-01T10:00"},
            "expected an ISO date YYYY-MM-DD, got '2026-01-01T10:00'.",
        ),
        (
            {"field": "created_at", "op": "between", "value": ["2026-02-01", "2026-01-01T10:00"]},
            "between takes [low, high] with low <= high; got ['2026-02-01', '2026-01-01T10:00'].",
        ),
        (
            {"field": "renewal_date", "op": "in_last_days", "value": 0},
            "in_last_days takes a whole number of days from 1 to 36,500.",
        ),
        (
            {"field": "renewal_date", "op": "in_next_days", "value": 1.5},
            "in_next_days takes a whole number of days from 1 to 36,500.",
        ),
        (
            {"field": "lead_score", "op": "top_percent", "value": 0},
            "top_percent takes a percentage greater than 0 and at most 100 (up to 2 decimals).",
        ),
        (
            {"field": "lead_score", "op": "bottom_percent", "value": 100.5},
            "bottom_percent takes a percentage greater than 0 and at most 100 (up to 2 decimals).",
        ),
        (
            {"field": "lead_score", "op": "top_percent", "value": 12.345},
            "top_percent takes a percentage greater than 0 and at most 100 (up to 2 decimals).",
        ),
        (
            {"field": "interests", "op": "contains_any", "value": []},
            "contains_any takes a non-empty list of non-empty texts.",
        ),
        ({"all": "x"}, "'all' takes a list of rules."),
        ({"any": []}, "an empty 'any' group; give it at least one rule."),
    ],
)
def test_bad_values_say_what_is_allowed(db, rule, message):
    assert only_message(rule) == message


def test_values_the_databases_cannot_hold_are_refused(db):
    assert errors({"field": "lead_score", "op": "gt", "value": 10**16}) == [("value", "bad_value")]
    assert errors({"field": "lead_score", "op": "between", "value": [0, float("inf")]}) == [("value", "bad_value")]
    assert errors({"field": "city", "op": "eq", "value": "a\x00b"}) == [("value", "bad_value")]
    assert errors({"event": {"kind": "purchase", "product": "\x00"}, "op": "performed"}) == [
        ("event.product", "bad_value")
    ]


def test_top_percent_accepts_the_whole_range(db):
    assert errors({"field": "lead_score", "op": "top_percent", "value": 100}) == []
    assert errors({"field": "lead_score", "op": "bottom_percent", "value": 0.01}) == []


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        (
            {"event": {"topic": "x"}, "op": "performed"},
            "event.kind",
            "an event needs a kind, one of email_open, email_click, site_visit, page_view, content_download, "
            "form_submit, webinar_attend, pricing_view, feature_comparison, demo_request, purchase, "
            "support_ticket_opened, support_ticket_closed, sales_touch, email_bounce_hard, email_bounce_soft.",
        ),
        ({"event": {"kind": "tweet"}, "op": "performed"}, "event.kind", "unknown activity kind 'tweet'; allowed: "),
        (
            {"event": {"kind": "purchase", "amount": 3}, "op": "performed"},
            "event.amount",
            "unknown key in event filters; allowed: kind, topic, product, campaign, url_contains.",
        ),
        (
            {"event": {"kind": "purchase", "topic": ""}, "op": "performed"},
            "event.topic",
            "topic takes a non-empty text (without NUL characters).",
        ),
        ({"event": "purchase", "op": "performed"}, "event", "event takes an object of filters: "),
        (
            {"event": {"kind": "purchase"}, "op": "gte", "value": 1},
            "op",
            "operator 'gte' does not apply to events; allowed: "
            "performed, not_performed, count_gte, count_lte, count_eq, sum_gte.",
        ),
        (
            {"event": {"kind": "purchase"}, "op": "count_gte", "value": -1},
            "value",
            "count_gte takes a whole number of activities, 0 or more.",
        ),
        ({"event": {"kind": "purchase"}, "op": "performed", "value": 2}, "value", "performed takes no value."),
        (
            {"event": {"kind": "purchase"}, "op": "sum_gte", "value": 10.005},
            "value",
            "sum_gte takes an amount (a number with up to 2 decimals).",
        ),
        (
            {"event": {"kind": "purchase"}, "op": "performed", "within_days": 0},
            "within_days",
            "within_days takes a whole number of days from 1 to 36,500 (leave it out for all time).",
        ),
        (
            {"event": {"kind": "purchase"}, "op": "performed", "within_days": "30"},
            "within_days",
            "within_days takes a whole number of days from 1 to 36,500 (leave it out for all time).",
        ),
    ],
)
def test_event_conditions_are_checked(db, rule, path, message):
    (error,) = validate_rule(rule, segment_slugs=set())
    assert error.path == path
    assert error.message.startswith(message)


def test_unknown_segment_slugs_are_looked_up_in_the_database(db):
    SegmentFactory(slug="customers")
    rule = {"any": [{"in_segment": "customers"}, {"not": {"in_segment": "ghosts"}}]}
    (error,) = validate_rule(rule)
    assert (error.path, error.code, error.message) == (
        "any[1].not.in_segment",
        "unknown_segment",
        "no segment has the slug 'ghosts'.",
    )
    assert validate_rule(rule, segment_slugs={"customers", "ghosts"}) == []


def test_shapes_that_are_not_rules(db):
    assert errors(["all"]) == [("", "not_object")]
    assert errors({"everything": []}) == [("", "unknown_rule")]
    assert errors({"all": [{"in_segment": 3}]}) == [("all[0].in_segment", "bad_value")]
    assert errors({"all": [{"field": "city", "op": "is_set"}], "any": []}) == [("any", "unknown_key")]
    assert errors({"in_segment": "x", "field": "city"}) != []


def test_nesting_is_bounded(db):
    rule = {"field": "city", "op": "is_set"}
    for _ in range(25):
        rule = {"not": rule}
    assert ("not." * 21).rstrip(".") in validate_rule(rule)[0].path


def test_referenced_slugs_finds_every_in_segment():
    rule = {"all": [{"in_segment": "a"}, {"any": [{"not": {"in_segment": "b"}}, {"field": "city", "op": "is_set"}]}]}
    assert referenced_slugs(rule) == {"a", "b"}
    assert referenced_slugs("garbage") == set()


def test_errors_read_as_path_and_message(db):
    (error,) = validate_rule({"not": {"field": "city", "op": "eq", "value": 1}}, segment_slugs=set())
    assert str(error) == "not.value: expected a non-empty text (use is_set / is_not_set for presence)."
    assert error.as_dict() == {
        "path": "not.value",
        "message": "expected a non-empty text (use is_set / is_not_set for presence).",
        "code": "bad_value",
    }


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({}, "choose a field, an activity or a segment."),
        ({"in_segment": ""}, "choose a segment."),
        ({"field": "lifecycle_stage", "op": "eq", "value": ""}, "choose a value."),
        ({"field": "lifecycle_stage", "op": "in", "value": []}, "choose at least one value."),
    ],
)
def test_what_the_builder_starts_empty_asks_for_a_choice(db, rule, message):
    assert only_message(rule) == message
