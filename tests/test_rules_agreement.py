"""Property test: for random valid rules and random contacts, the compiler and the explainer agree.

For every contact: `contact in matching_contacts(rule, now)` == `explain(rule, contact, now).result`.
Values are drawn from small pools that sit on the edges the language defines (empty strings,
missing values, wrong JSON types, case and non-ASCII text, LIKE wildcards, window boundaries,
ties), so that random rules hit them often.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.models import Activity, Company, Contact, PropertyDefinition
from segments.models import Membership, Segment
from segments.rules.compiler import matching_contacts
from segments.rules.explainer import explain
from segments.rules.registry import get_fields
from segments.rules.thresholds import measure_thresholds
from segments.rules.validation import validate_rule

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MICRO = timedelta(microseconds=1)
TODAY = date(2026, 3, 10)

TEXTS = ["München", "MÜNCHEN-West", "münchen", "Berlin", "50%_off", "a_b", "", "Ünïcode"]
RULE_TEXTS = ["münchen", "MÜN", "west", "berlin", "%", "_", "50%", "a_b", "n", "ünï"]
TAGS = ["AWS", "aws", "Kubernetes", "Ünïcode", "go", "50%"]
RULE_TAGS = ["aws", "KUBERNETES", "ünïcode", "GO", "5_%", "x"]
DAY_OFFSETS = [-91, -31, -30, -1, 0, 1, 30, 90, 91]
MOMENT_OFFSETS = [-30 * DAY - MICRO, -30 * DAY, -7 * DAY - MICRO, -7 * DAY, -DAY, -MICRO, timedelta(0), MICRO, DAY]
KINDS = ["email_click", "purchase", "page_view"]
SEGMENTS = ["seg-a", "seg-b"]
PROPERTIES = [
    ("tier", "choice", ["gold", "silver"]),
    ("seats", "number", []),
    ("vip", "bool", []),
    ("trial_end", "date", []),
    ("tools", "tags", []),
    ("note", "text", []),
]
PROPERTY_VALUES = {
    "tier": ["gold", "silver", "", None, 3],
    "seats": [0, 1, 2.5, 40, "40", None, True],
    "vip": [True, False, "yes", None],
    "trial_end": ["2026-03-09", "2026-03-10", "2026-04-09", "2026-02-08", "", 20260310],
    "tools": [["Jira"], [], ["jira", "AWS"], "Jira", None],
    "note": ["Käse", "KÄSE", "", 7, None, "50%_off"],
}

# Rule fields by type, with the values rules compare them with.
TEXT_FIELDS = ["city", "company.name", "props.note"]
CHOICE_FIELDS = {
    "seniority": ["vp", "director", "entry"],
    "lifecycle_stage": ["lead", "mql", "customer"],
    "props.tier": ["gold", "silver"],
}
NUMBER_FIELDS = ["lead_score", "lifetime_value", "company.employee_count", "props.seats"]
NUMBERS = [0, 1, 2.5, 10, 10.0, 40, 49.5, 50, 0.1, 50.5, 250, 1000]
BOOL_FIELDS = ["do_not_contact", "company.is_target_account", "props.vip"]
DATE_FIELDS = ["renewal_date", "props.trial_end"]
DATES = [(TODAY + timedelta(days=d)).isoformat() for d in (-31, -30, -1, 0, 1, 30, 31)]
DATETIMES = ["2026-02-08", "2026-03-03", "2026-03-03T12:00:00Z", "2026-03-10", "2026-03-10T12:00:00+00:00"]
TAG_FIELDS = ["interests", "company.technologies", "props.tools"]
PERCENTS = [10, 25, 33.33, 50, 100]


def condition(field: str, op: str, value=None) -> dict:
    rule = {"field": field, "op": op}
    if value is not None:
        rule["value"] = value
    return rule


def pair(values: list) -> st.SearchStrategy:
    return st.tuples(st.integers(0, len(values) - 1), st.integers(0, len(values) - 1)).map(
        lambda ij: [values[min(ij)], values[max(ij)]]
    )


def presence(fields) -> st.SearchStrategy:
    return st.builds(condition, st.sampled_from(list(fields)), st.sampled_from(["is_set", "is_not_set"]))


text_conditions = st.one_of(
    st.builds(
        condition,
        st.sampled_from(TEXT_FIELDS),
        st.sampled_from(["eq", "neq", "contains", "starts_with", "ends_with"]),
        st.sampled_from(RULE_TEXTS),
    ),
    st.builds(
        condition,
        st.sampled_from(TEXT_FIELDS),
        st.sampled_from(["in", "not_in"]),
        st.lists(st.sampled_from(RULE_TEXTS), min_size=1, max_size=3),
    ),
)
choice_conditions = st.sampled_from(list(CHOICE_FIELDS)).flatmap(
    lambda field: st.one_of(
        st.builds(condition, st.just(field), st.sampled_from(["eq", "neq"]), st.sampled_from(CHOICE_FIELDS[field])),
        st.builds(
            condition,
            st.just(field),
            st.sampled_from(["in", "not_in"]),
            st.lists(st.sampled_from(CHOICE_FIELDS[field]), min_size=1, max_size=2),
        ),
    )
)
number_conditions = st.one_of(
    st.builds(
        condition,
        st.sampled_from(NUMBER_FIELDS),
        st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte"]),
        st.sampled_from(NUMBERS),
    ),
    st.builds(condition, st.sampled_from(NUMBER_FIELDS), st.just("between"), pair(sorted(NUMBERS))),
    st.builds(
        condition,
        st.sampled_from(NUMBER_FIELDS),
        st.sampled_from(["top_percent", "bottom_percent"]),
        st.sampled_from(PERCENTS),
    ),
)
bool_conditions = st.builds(condition, st.sampled_from(BOOL_FIELDS), st.sampled_from(["is_true", "is_false"]))
date_conditions = st.one_of(
    st.builds(condition, st.sampled_from(DATE_FIELDS), st.sampled_from(["before", "after"]), st.sampled_from(DATES)),
    st.builds(condition, st.sampled_from(DATE_FIELDS), st.just("between"), pair(DATES)),
    st.builds(
        condition, st.just("lifecycle_changed_at"), st.sampled_from(["before", "after"]), st.sampled_from(DATETIMES)
    ),
    st.builds(condition, st.just("lifecycle_changed_at"), st.just("between"), pair(DATETIMES)),
    st.builds(
        condition,
        st.sampled_from([*DATE_FIELDS, "lifecycle_changed_at"]),
        st.sampled_from(["in_last_days", "in_next_days", "more_than_days_ago"]),
        st.sampled_from([1, 7, 30, 90]),
    ),
)
tag_conditions = st.builds(
    condition,
    st.sampled_from(TAG_FIELDS),
    st.sampled_from(["contains_any", "contains_all", "contains_none"]),
    st.lists(st.sampled_from(RULE_TAGS), min_size=1, max_size=3),
)


@st.composite
def event_conditions(draw) -> dict:
    event = {"kind": draw(st.sampled_from(KINDS))}
    for key, values in [
        ("topic", ["cloud", "CLOUD", "security"]),
        ("product", ["vault", "VAULT"]),
        ("campaign", ["spring", "Spring"]),
        ("url_contains", ["100%", "b_c", "X.EXAMPLE", "1%0"]),
    ]:
        if draw(st.booleans()) and draw(st.booleans()):
            event[key] = draw(st.sampled_from(values))
    rule = {
        "event": event,
        "op": draw(st.sampled_from(["performed", "not_performed", "count_gte", "count_lte", "count_eq", "sum_gte"])),
    }
    if rule["op"].startswith("count"):
        rule["value"] = draw(st.integers(0, 3))
    elif rule["op"] == "sum_gte":
        rule["value"] = draw(st.sampled_from([0, 5, 10.1, 20.2, 30.3, -5]))
    if draw(st.booleans()):
        rule["within_days"] = draw(st.sampled_from([1, 7, 30]))
    return rule


# All-time counts of one kind: the compiler reads them from ActivityTally (kept by triggers), the
# explainer from the activities themselves; MOMENT_OFFSETS puts some activities after NOW.
tallied_conditions = st.one_of(
    st.builds(
        lambda kind, op, value: {"event": {"kind": kind}, "op": op, "value": value},
        st.sampled_from(KINDS),
        st.sampled_from(["count_gte", "count_eq", "count_lte"]),
        st.integers(0, 3),
    ),
    st.builds(
        lambda kind, op: {"event": {"kind": kind}, "op": op},
        st.sampled_from(KINDS),
        st.sampled_from(["performed", "not_performed"]),
    ),
)
# An event condition or its `not`: each compiles to EXISTS or NOT EXISTS over a grouped set.
negatable_events = st.builds(
    lambda rule, negated: {"not": rule} if negated else rule,
    st.one_of(event_conditions(), tallied_conditions),
    st.booleans(),
)

leaves = st.one_of(
    text_conditions,
    choice_conditions,
    number_conditions,
    bool_conditions,
    date_conditions,
    tag_conditions,
    presence(["city", "seniority", "lifetime_value", "renewal_date", "interests", "company.technologies"]),
    presence(["company.employee_count", "company.is_target_account", "props.tier", "props.trial_end", "props.tools"]),
    event_conditions(),
    tallied_conditions,
    st.builds(lambda slug: {"in_segment": slug}, st.sampled_from([*SEGMENTS, "no-such-segment"])),
)
# Single conditions, weighted towards the ones with edges (windows, tallies, ranks), and whole rule trees.
single_conditions = st.one_of(leaves, event_conditions(), event_conditions(), tallied_conditions, number_conditions)
rules = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(lambda items: {"all": items}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda item: {"not": item}, children),
    ),
    max_leaves=8,
)

companies = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(TEXTS),
            "employee_count": st.sampled_from([None, 10, 250, 250, 1000]),
            "technologies": st.lists(st.sampled_from(TAGS), max_size=3),
            "is_target_account": st.booleans(),
        }
    ),
    max_size=3,
)


def activity_lists(max_size: int) -> st.SearchStrategy:
    return st.lists(
        st.fixed_dictionaries(
            {
                "kind": st.sampled_from(KINDS),
                "topic": st.sampled_from(["Cloud", "cloud", "security", ""]),
                "product": st.sampled_from(["Vault", "vault", ""]),
                "campaign": st.sampled_from(["Spring", ""]),
                "url": st.sampled_from(["https://x.example/a?d=100%", "https://x.example/b_c", ""]),
                "value": st.sampled_from([None, Decimal("10.10"), Decimal("-5.00"), Decimal("20.20")]),
                "occurred_at": st.sampled_from(MOMENT_OFFSETS).map(lambda offset: NOW + offset),
            }
        ),
        max_size=max_size,
    )


def contact_lists(activities: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(
        st.fixed_dictionaries(
            {
                "company": st.one_of(st.none(), st.integers(0, 2)),
                "city": st.sampled_from(TEXTS),
                "seniority": st.sampled_from(["", "vp", "director"]),
                "lifecycle_stage": st.sampled_from(["lead", "mql", "customer"]),
                "lead_score": st.sampled_from([0, 10, 50, 50, 100]),
                "lifetime_value": st.sampled_from([None, Decimal("0.10"), Decimal("10.00"), Decimal("50.50")]),
                "renewal_date": st.one_of(
                    st.none(), st.sampled_from(DAY_OFFSETS).map(lambda d: TODAY + timedelta(days=d))
                ),
                "lifecycle_changed_at": st.sampled_from(MOMENT_OFFSETS).map(lambda offset: NOW + offset),
                "interests": st.lists(st.sampled_from(TAGS), max_size=3),
                "do_not_contact": st.booleans(),
                "properties": st.fixed_dictionaries(
                    {}, optional={key: st.sampled_from(values) for key, values in PROPERTY_VALUES.items()}
                ),
                "activities": activities,
                "segments": st.sets(st.sampled_from(SEGMENTS)),
            }
        ),
        min_size=1,
        max_size=6,
    )


contacts = contact_lists(activity_lists(4))
# Half of the contacts without any activity: those a grouped set never holds.
sparse_contacts = contact_lists(st.one_of(st.just([]), activity_lists(4)))
# Many activities each, some after NOW: where an all-time count read from the tally must still
# count only those up to NOW.
busy_contacts = contact_lists(activity_lists(8))


def build_world(company_rows: list[dict], contact_rows: list[dict]) -> list[Contact]:
    PropertyDefinition.objects.bulk_create(
        PropertyDefinition(key=key, label=key, type=type, choices=choices, layer="value")
        for key, type, choices in PROPERTIES
    )
    segments = {slug: Segment.objects.create(name=slug, slug=slug) for slug in SEGMENTS}
    made = Company.objects.bulk_create(Company(domain=f"c{i}.example", **row) for i, row in enumerate(company_rows))
    people = []
    for i, row in enumerate(contact_rows):
        fields = {k: v for k, v in row.items() if k not in ("company", "activities", "segments")}
        company = made[row["company"]] if row["company"] is not None and row["company"] < len(made) else None
        people.append(Contact(email=f"p{i}@example.com", company=company, **fields))
    people = Contact.objects.bulk_create(people)
    Activity.objects.bulk_create(
        Activity(contact=person, **activity)
        for person, row in zip(people, contact_rows, strict=True)
        for activity in row["activities"]
    )
    Membership.objects.bulk_create(
        Membership(segment=segments[slug], contact=person)
        for person, row in zip(people, contact_rows, strict=True)
        for slug in row["segments"]
    )
    return people


def assert_agreement(rule: dict, company_rows: list[dict], contact_rows: list[dict], zone: str) -> None:
    with transaction.atomic(), override_settings(TIME_ZONE=zone):
        people = build_world(company_rows, contact_rows)
        fields = get_fields()
        assert validate_rule(rule, fields=fields, segment_slugs={*SEGMENTS, "no-such-segment"}) == []
        selected = set(matching_contacts(rule, now=NOW, fields=fields).values_list("pk", flat=True))
        some = [person.pk for person in people[::2]]
        scoped = matching_contacts(rule, now=NOW, fields=fields, contact_ids=some).values_list("pk", flat=True)
        assert set(scoped) == selected & set(some)
        for person in people:
            explanation = explain(rule, person, now=NOW, fields=fields)
            assert (person.pk in selected) == explanation.result, (person.email, explanation.root.to_dict())
        # With thresholds stored as a full refresh stores them, nothing changed: the same answers.
        stored = measure_thresholds(rule, fields=fields)
        with_stored = matching_contacts(rule, now=NOW, fields=fields, contact_ids=some, thresholds=stored)
        assert set(with_stored.values_list("pk", flat=True)) == selected & set(some)
        for person in people[::2] if stored else []:
            explanation = explain(rule, person, now=NOW, fields=fields, thresholds=stored)
            assert (person.pk in selected) == explanation.result, (person.email, stored, explanation.root.to_dict())
        transaction.set_rollback(True)


zones = st.sampled_from(["UTC", "Pacific/Auckland", "America/Los_Angeles"])
suppressed = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=150, deadline=None, suppress_health_check=suppressed)
@given(rule=single_conditions, company_rows=companies, contact_rows=contacts, zone=zones)
def test_compiler_and_explainer_agree_on_single_conditions(db, rule, company_rows, contact_rows, zone):
    assert_agreement(rule, company_rows, contact_rows, zone)


@settings(max_examples=100, deadline=None, suppress_health_check=suppressed)
@given(rule=rules, company_rows=companies, contact_rows=contacts, zone=zones)
def test_compiler_and_explainer_agree_on_nested_rules(db, rule, company_rows, contact_rows, zone):
    assert_agreement(rule, company_rows, contact_rows, zone)


@settings(max_examples=80, deadline=None, suppress_health_check=suppressed)
@given(rule=tallied_conditions, contact_rows=busy_contacts, zone=zones)
def test_compiler_and_explainer_agree_on_tallied_counts_of_busy_contacts(db, rule, contact_rows, zone):
    assert_agreement(rule, [], contact_rows, zone)


@settings(max_examples=150, deadline=None, suppress_health_check=suppressed)
@given(rule=negatable_events, contact_rows=sparse_contacts, zone=zones)
def test_compiler_and_explainer_agree_on_event_conditions_and_their_negation(db, rule, contact_rows, zone):
    assert_agreement(rule, [], contact_rows, zone)
