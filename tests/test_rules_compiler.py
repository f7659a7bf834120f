"""compile_rule / matching_contacts: every property operator on every type, missing values and `not`."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from contacts.models import Contact, ContactMetrics
from segments.rules import registry
from segments.rules.compiler import Thresholds, compile_rule, matching_contacts
from segments.rules.registry import get_fields, metric_field
from segments.rules.validation import InvalidRule
from tests.factories import CompanyFactory, ContactFactory, PropertyDefinitionFactory
from tests.rule_checks import selected

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def names(rule: dict, *, now: datetime = NOW) -> set[str]:
    return set(selected(rule, now=now))


def cond(field: str, op: str, value=None) -> dict:
    rule = {"field": field, "op": op}
    if value is not None:
        rule["value"] = value
    return rule


@pytest.fixture
def cities(db):
    for name, city in [("a", "München"), ("b", "MÜNCHEN-West"), ("c", ""), ("d", "50%_off\\x"), ("e", "Berlin")]:
        ContactFactory(first_name=name, city=city)


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "münchen", {"a"}),
        ("eq", "MÜNCHEN", {"a"}),
        ("neq", "münchen", {"b", "d", "e"}),
        ("in", ["berlin", "MÜNCHEN"], {"a", "e"}),
        ("not_in", ["berlin", "MÜNCHEN"], {"b", "d"}),
        ("contains", "ÜNCHEN", {"a", "b"}),
        ("contains", "%", {"d"}),
        ("contains", "_", {"d"}),
        ("contains", "0%_O", {"d"}),
        ("contains", "\\", {"d"}),
        ("contains", "n%n", set()),
        ("starts_with", "mün", {"a", "b"}),
        ("starts_with", "_", set()),
        ("ends_with", "WEST", {"b"}),
        ("ends_with", "\\X", {"d"}),
        ("is_set", None, {"a", "b", "d", "e"}),
        ("is_not_set", None, {"c"}),
    ],
)
def test_text_operators_compare_case_insensitively_and_skip_empty_strings(cities, op, value, expected):
    assert names(cond("city", op, value)) == expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "münchen", {"b", "c", "d", "e"}),
        ("neq", "münchen", {"a", "c"}),
        ("not_in", ["berlin"], {"c", "e"}),
        ("contains", "%", {"a", "b", "c", "e"}),
        ("is_set", None, {"c"}),
    ],
)
def test_not_of_a_text_condition_is_true_for_missing_values(cities, op, value, expected):
    assert names({"not": cond("city", op, value)}) == expected


@pytest.fixture
def employees(db):
    ContactFactory(first_name="a", company=CompanyFactory(employee_count=10))
    ContactFactory(first_name="b", company=CompanyFactory(employee_count=250))
    ContactFactory(first_name="c", company=CompanyFactory(employee_count=None))
    ContactFactory(first_name="d", company=None)
    ContactFactory(first_name="e", company=CompanyFactory(employee_count=1000))


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", 250, {"b"}),
        ("eq", 250.0, {"b"}),
        ("neq", 250, {"a", "e"}),
        ("gt", 250, {"e"}),
        ("gt", 249.5, {"b", "e"}),
        ("gte", 250, {"b", "e"}),
        ("lt", 250, {"a"}),
        ("lt", 250.5, {"a", "b"}),
        ("lte", 250, {"a", "b"}),
        ("between", [10, 250], {"a", "b"}),
        ("between", [10.5, 1000], {"b", "e"}),
        ("is_set", None, {"a", "b", "e"}),
        ("is_not_set", None, {"c", "d"}),
    ],
)
def test_number_operators_through_the_company_join(employees, op, value, expected):
    assert names(cond("company.employee_count", op, value)) == expected


def test_not_of_a_number_condition_includes_contacts_without_company(employees):
    assert names({"not": cond("company.employee_count", "gte", 250)}) == {"a", "c", "d"}
    assert names({"not": cond("company.employee_count", "neq", 250)}) == {"b", "c", "d"}


def test_decimal_fields_compare_with_float_rule_values(db):
    ContactFactory(first_name="a", lifetime_value=Decimal("0.10"))
    ContactFactory(first_name="b", lifetime_value=Decimal("0.30"))
    ContactFactory(first_name="c", lifetime_value=None)
    assert names(cond("lifetime_value", "eq", 0.1)) == {"a"}
    assert names(cond("lifetime_value", "gte", 0.3)) == {"b"}
    assert names(cond("lifetime_value", "lt", 1)) == {"a", "b"}


@pytest.fixture
def accounts(db):
    ContactFactory(first_name="a", company=CompanyFactory(is_target_account=True), do_not_contact=True)
    ContactFactory(first_name="b", company=CompanyFactory(is_target_account=False))
    ContactFactory(first_name="d", company=None)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (cond("company.is_target_account", "is_true"), {"a"}),
        (cond("company.is_target_account", "is_false"), {"b"}),
        ({"not": cond("company.is_target_account", "is_true")}, {"b", "d"}),
        ({"not": cond("company.is_target_account", "is_false")}, {"a", "d"}),
        (cond("company.is_target_account", "is_set"), {"a", "b"}),
        (cond("company.is_target_account", "is_not_set"), {"d"}),
        (cond("do_not_contact", "is_true"), {"a"}),
        (cond("do_not_contact", "is_false"), {"b", "d"}),
    ],
)
def test_bool_operators(accounts, rule, expected):
    assert names(rule) == expected


@pytest.fixture
def seniorities(db):
    ContactFactory(first_name="a", seniority="vp", lifecycle_stage="mql")
    ContactFactory(first_name="b", seniority="director", lifecycle_stage="sql")
    ContactFactory(first_name="c", seniority="", lifecycle_stage="customer")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (cond("seniority", "eq", "vp"), {"a"}),
        (cond("seniority", "neq", "vp"), {"b"}),
        (cond("seniority", "in", ["vp", "director"]), {"a", "b"}),
        (cond("seniority", "not_in", ["vp"]), {"b"}),
        ({"not": cond("seniority", "eq", "vp")}, {"b", "c"}),
        ({"not": cond("seniority", "not_in", ["vp"])}, {"a", "c"}),
        (cond("seniority", "is_not_set"), {"c"}),
        (cond("lifecycle_stage", "in", ["mql", "sql"]), {"a", "b"}),
    ],
)
def test_choice_operators(seniorities, rule, expected):
    assert names(rule) == expected


@pytest.fixture
def renewals(db):
    today = date(2026, 3, 10)
    for name, days in [("m31", -31), ("m30", -30), ("t", 0), ("p1", 1), ("p90", 90), ("p91", 91)]:
        ContactFactory(first_name=name, renewal_date=today + timedelta(days=days))
    ContactFactory(first_name="none", renewal_date=None)


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("before", "2026-03-10", {"m31", "m30"}),
        ("after", "2026-03-10", {"p1", "p90", "p91"}),
        ("between", ["2026-02-08", "2026-03-11"], {"m30", "t", "p1"}),
        ("in_last_days", 30, {"m30", "t"}),
        ("in_next_days", 90, {"t", "p1", "p90"}),
        ("more_than_days_ago", 30, {"m31"}),
        ("is_set", None, {"m31", "m30", "t", "p1", "p90", "p91"}),
        ("is_not_set", None, {"none"}),
    ],
)
def test_date_operators_count_days_from_today_inclusively(renewals, op, value, expected):
    assert names(cond("renewal_date", op, value)) == expected


def test_not_of_a_date_condition_includes_missing_dates(renewals):
    assert names({"not": cond("renewal_date", "in_next_days", 90)}) == {"m31", "m30", "p91", "none"}


def test_date_fields_use_today_in_the_project_time_zone(db, settings):
    ContactFactory(first_name="today-utc", renewal_date=date(2026, 3, 10))
    late_evening_utc = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # already 11 March in Auckland
    assert names(cond("renewal_date", "in_next_days", 1), now=late_evening_utc) == {"today-utc"}
    settings.TIME_ZONE = "Pacific/Auckland"
    assert names(cond("renewal_date", "in_next_days", 1), now=late_evening_utc) == set()


@pytest.fixture
def stage_changes(db):
    moments = {
        "week-1us": NOW - timedelta(days=7, microseconds=1),
        "week": NOW - timedelta(days=7),
        "now": NOW,
        "future": NOW + timedelta(microseconds=1),
        "day-end": datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC),
        "day-after": datetime(2026, 3, 2, tzinfo=UTC),
    }
    for name, moment in moments.items():
        contact = ContactFactory(first_name=name)
        Contact.objects.filter(pk=contact.pk).update(lifecycle_changed_at=moment)


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("in_last_days", 7, {"week", "now"}),
        ("more_than_days_ago", 7, {"week-1us", "day-end", "day-after"}),
        ("in_next_days", 1, {"now", "future"}),
        ("before", "2026-03-02", {"day-end"}),
        ("after", "2026-03-01", {"day-after", "week-1us", "week", "now", "future"}),
        ("between", ["2026-03-01", "2026-03-01"], {"day-end"}),
        ("before", "2026-03-10T12:00:00+00:00", {"week-1us", "week", "day-end", "day-after"}),
        ("after", "2026-03-10T12:00:00Z", {"future"}),
        ("between", ["2026-03-02", "2026-03-10T12:00:00Z"], {"day-after", "week-1us", "week", "now"}),
    ],
)
def test_datetime_operators_at_their_boundaries(stage_changes, op, value, expected):
    assert names(cond("lifecycle_changed_at", op, value)) == expected


@pytest.fixture
def interests(db):
    ContactFactory(first_name="a", interests=["AWS", "Kubernetes"], company=CompanyFactory(technologies=["Go"]))
    ContactFactory(first_name="b", interests=[], company=CompanyFactory(technologies=[]))
    ContactFactory(first_name="c", interests=["aws"], company=None)
    ContactFactory(first_name="d", interests=["Ünïcode", "50%"], company=None)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (cond("interests", "contains_any", ["aws"]), {"a", "c"}),
        (cond("interests", "contains_any", ["üNÏCODE", "nothing"]), {"d"}),
        (cond("interests", "contains_all", ["aws", "KUBERNETES"]), {"a"}),
        (cond("interests", "contains_all", ["aws", "go"]), set()),
        (cond("interests", "contains_none", ["aws"]), {"b", "d"}),
        (cond("interests", "contains_any", ["5_%"]), set()),
        (cond("interests", "is_set", None), {"a", "b", "c", "d"}),
        (cond("company.technologies", "contains_none", ["go"]), {"b"}),
        ({"not": cond("company.technologies", "contains_any", ["go"])}, {"b", "c", "d"}),
        (cond("company.technologies", "is_set", None), {"a", "b"}),
        (cond("company.technologies", "is_not_set", None), {"c", "d"}),
    ],
)
def test_tag_operators_ignore_case_and_count_an_empty_list_as_set(interests, rule, expected):
    assert names(rule) == expected


@pytest.fixture
def odd_lists(db):
    # Only top-level strings are tags: numbers, nested lists and object keys never match, and
    # quotes, backslashes and control characters inside a tag compare as themselves.
    ContactFactory(first_name="nested", interests=[5, ["aws"], {"aws": "AWS"}, None, True])
    ContactFactory(first_name="quoted", interests=['Say "Hi"\\Now', "Tab\tEnd"])
    ContactFactory(first_name="accents", interests=["ÉCOLE", "Straße"])
    ContactFactory(first_name="number", interests=["5", "true"])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (cond("interests", "contains_any", ["aws"]), set()),
        (cond("interests", "contains_any", ["5"]), {"number"}),
        (cond("interests", "contains_any", ["true", "null"]), {"number"}),
        (cond("interests", "contains_any", ['say "hi"\\now']), {"quoted"}),
        (cond("interests", "contains_all", ["tab\tend", 'SAY "HI"\\NOW']), {"quoted"}),
        (cond("interests", "contains_any", ["école", "x"]), {"accents"}),
        (cond("interests", "contains_none", ["straße"]), {"nested", "quoted", "number"}),
    ],
)
def test_tag_operators_read_only_the_top_level_texts_of_a_list(odd_lists, rule, expected):
    assert names(rule) == expected


@pytest.fixture
def properties(db):
    PropertyDefinitionFactory(key="tier", type="choice", choices=["gold", "silver"])
    PropertyDefinitionFactory(key="seats", type="number")
    PropertyDefinitionFactory(key="vip", type="bool")
    PropertyDefinitionFactory(key="trial_end", type="date")
    PropertyDefinitionFactory(key="tools", type="tags")
    PropertyDefinitionFactory(key="note", type="text")
    ContactFactory(
        first_name="a",
        properties={
            "tier": "gold",
            "seats": 12,
            "vip": True,
            "trial_end": "2026-03-20",
            "tools": ["Jira"],
            "note": "Käse",
        },
    )
    ContactFactory(
        first_name="b",
        properties={"tier": "silver", "seats": 2.5, "vip": False, "trial_end": "2026-02-01", "tools": [], "note": ""},
    )
    ContactFactory(first_name="c", properties={})
    # Values of the wrong JSON type count as missing, as does JSON null.
    ContactFactory(
        first_name="d",
        properties={"tier": None, "seats": "12", "vip": "yes", "trial_end": 20260320, "tools": "Jira", "note": 7},
    )


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (cond("props.tier", "eq", "gold"), {"a"}),
        (cond("props.tier", "neq", "gold"), {"b"}),
        ({"not": cond("props.tier", "in", ["gold"])}, {"b", "c", "d"}),
        (cond("props.tier", "is_not_set"), {"c", "d"}),
        (cond("props.seats", "gte", 12), {"a"}),
        (cond("props.seats", "lt", 3), {"b"}),
        (cond("props.seats", "between", [2.5, 12]), {"a", "b"}),
        (cond("props.seats", "is_set"), {"a", "b"}),
        (cond("props.vip", "is_true"), {"a"}),
        (cond("props.vip", "is_false"), {"b"}),
        ({"not": cond("props.vip", "is_true")}, {"b", "c", "d"}),
        (cond("props.trial_end", "after", "2026-03-10"), {"a"}),
        (cond("props.trial_end", "in_next_days", 10), {"a"}),
        (cond("props.trial_end", "more_than_days_ago", 30), {"b"}),
        (cond("props.trial_end", "is_not_set"), {"c", "d"}),
        (cond("props.tools", "contains_any", ["JIRA"]), {"a"}),
        (cond("props.tools", "contains_none", ["jira"]), {"b"}),
        (cond("props.tools", "is_set"), {"a", "b"}),
        (cond("props.note", "eq", "KÄSE"), {"a"}),
        (cond("props.note", "is_not_set"), {"b", "c", "d"}),
    ],
)
def test_custom_property_operators_read_the_json_by_declared_type(properties, rule, expected):
    assert names(rule) == expected


def test_groups_nest_with_all_any_and_not(employees):
    rule = {
        "any": [
            {"all": [cond("company.employee_count", "gte", 250), {"not": cond("company.employee_count", "eq", 1000)}]},
            cond("company.employee_count", "is_not_set"),
        ]
    }
    assert names(rule) == {"b", "c", "d"}
    assert names({"not": rule}) == {"a", "e"}


def test_matching_contacts_runs_one_statement(employees, django_assert_num_queries):
    fields = get_fields()
    rule = {"all": [cond("company.employee_count", "gte", 250), cond("interests", "contains_any", ["aws"])]}
    with django_assert_num_queries(1):
        list(matching_contacts(rule, now=NOW, fields=fields))


def test_compile_rule_refuses_an_invalid_rule(db):
    with pytest.raises(InvalidRule) as caught:
        compile_rule({"all": [cond("city", "gt", 3)]}, now=NOW)
    assert caught.value.errors[0].path == "all[0].op"


def test_an_unknown_segment_slug_compiles_to_nobody(employees):
    assert names({"in_segment": "nope"}) == set()
    assert names({"not": {"in_segment": "nope"}}) == {"a", "b", "c", "d", "e"}


def test_metric_fields_need_only_a_registry_entry(db, monkeypatch):
    monkeypatch.setattr(
        registry,
        "METRIC_FIELDS",
        [
            metric_field("engagement_score", "number", "behavioral"),
            metric_field("engagement_level", "choice", "behavioral"),
            metric_field("topics", "tags", "psychographic"),
            metric_field("strong_intent", "bool", "behavioral"),
        ],
    )
    for name, score, level, topics in [("a", 90.0, "highly_engaged", ["Cloud"]), ("b", 20.0, "disengaged", [])]:
        contact = ContactFactory(first_name=name)
        ContactMetrics.objects.create(
            contact=contact, as_of=NOW, engagement_score=score, engagement_level=level, topics=topics
        )
    ContactFactory(first_name="no-metrics")
    assert get_fields()["metrics.engagement_level"].choices == ("highly_engaged", "moderately_engaged", "disengaged")
    assert names(cond("metrics.engagement_score", "top_percent", 50)) == {"a"}
    assert names(cond("metrics.engagement_level", "neq", "highly_engaged")) == {"b"}
    assert names(cond("metrics.topics", "contains_none", ["cloud"])) == {"b"}
    assert names(cond("metrics.strong_intent", "is_false")) == {"a", "b"}
    assert names({"not": cond("metrics.engagement_score", "gte", 10)}) == {"no-metrics"}


def test_a_stored_whole_threshold_compares_an_integer_column_as_an_integer(db):
    # given a threshold stored as a float (JSON), as a full refresh stores it
    ContactFactory(first_name="a", lead_score=95)
    ContactFactory(first_name="b", lead_score=89)
    rule = cond("lead_score", "top_percent", 10)
    stored: Thresholds = {"lead_score top_percent 10": 90.0}

    # when the rule is compiled with it
    query = matching_contacts(rule, now=NOW, thresholds=stored).values("pk").query
    sql, params = query.sql_with_params()

    # then the column is compared with the integer 90, not cast row by row (which loses its index)
    assert 90 in params
    assert all(not isinstance(p, float) for p in params)
    assert "numeric" not in sql.lower()
    assert set(matching_contacts(rule, now=NOW, thresholds=stored).values_list("first_name", flat=True)) == {"a"}
    half_point: Thresholds = {"lead_score top_percent 10": 89.5}
    half = matching_contacts(rule, now=NOW, thresholds=half_point)
    assert set(half.values_list("first_name", flat=True)) == {"a"}
