"""Compile a rule into one ORM filter over contacts: one SQL statement, PostgreSQL or SQLite.

Public: `compile_rule(rule, *, now, fields=None, thresholds=None) -> Q`,
`matching_contacts(rule, *, now, fields=None, thresholds=None) -> QuerySet[Contact]`, and for
top/bottom_percent `threshold_key` and `percent_threshold` (see thresholds.py).

Every condition compiles to an expression that is TRUE or FALSE, never NULL: a comparison is
ANDed with "the value is set", so a condition on a missing value is false and `not` of it is
true (two-valued logic, as the design asks). Text is compared folded (`expressions.Fold`);
choices compare exactly (their values are validated against the closed list); numbers compare
as the rule wrote them (an int exactly, a float as double precision).

Event conditions read Activity rows of the filters' kind up to `now`, grouped by contact: the
grouped set (`event_contacts`) keeps the contacts whose count or sum passes the condition, or,
for a condition that holds for a contact without activity (`not_performed`, `count_lte`,
`count_eq 0`, a `sum_gte` of 0 or less), the contacts whose count or sum fails it. The
condition is then EXISTS or NOT EXISTS over that set (`AmongContacts`), which PostgreSQL plans
as a semi-join or an anti-join, the set computed once, with or without statistics. `not` is
pushed down to the conditions (De Morgan) so that each one sits directly under AND/OR, where
the planner can make it a join. An all-time count of one kind (`site_visit count_gte 5`, no
window, no other filter) reads ActivityTally, the per-(contact, kind) count the database's
triggers keep, instead of grouping every activity of that kind. For a few given contacts
(`matching_contacts(contact_ids=...)`) each condition instead probes each contact's activities
on (contact, kind, time).

top/bottom_percent compare with a threshold: the one given in `thresholds` for that condition
(stored by the segment's last full refresh, see thresholds.py), else measured live by an
uncorrelated subquery in the same statement.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from operator import and_, eq, ge, le, or_

from django.db.models import (
    Count,
    DateField,
    DateTimeField,
    Exists,
    Expression,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, Round
from django.db.models.lookups import (
    Contains,
    EndsWith,
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    LessThanOrEqual,
    StartsWith,
)

from contacts.models import Activity, ActivityTally, Contact
from predictions.models import PropensityScore
from segments.models import Membership, Segment
from segments.rules.clock import bounds, relative_bounds
from segments.rules.expressions import AmongContacts, Fold, HasTag, PercentThreshold, PropertyValue, TagList, fold
from segments.rules.registry import Field, get_fields, reads_rows
from segments.rules.validation import InvalidRule, referenced_slugs, validate_rule

_TEXT_LIKE = {"text", "choice"}
PERCENT_OPS = ("top_percent", "bottom_percent")
Thresholds = dict[str, float | None]


def matching_contacts(
    rule: object,
    *,
    now: datetime,
    fields: dict[str, Field] | None = None,
    contact_ids: Collection[int] | Expression | None = None,
    thresholds: Thresholds | None = None,
    also: Q | None = None,
) -> QuerySet[Contact]:
    """The contacts `rule` selects at `now`, as one lazy queryset; with `also`, those it selects too
    (a suppression segment's held contacts, segments/targets.py).

    With `contact_ids` (ids, or an expression giving ids), only those contacts are considered,
    and event conditions are compiled to probe each one's activities (cheap for a few contacts)
    instead of grouping all activities.
    `thresholds`: stored top/bottom_percent thresholds by `threshold_key` (others are live).
    """
    q = compile_rule(rule, now=now, fields=fields, few_contacts=contact_ids is not None, thresholds=thresholds)
    contacts = Contact.objects.filter(q if also is None else q | also)
    return contacts if contact_ids is None else contacts.filter(pk__in=contact_ids)


def compile_rule(
    rule: object,
    *,
    now: datetime,
    fields: dict[str, Field] | None = None,
    few_contacts: bool = False,
    thresholds: Thresholds | None = None,
) -> Q:
    """`rule` as a Q over Contact; raises InvalidRule when validation finds errors.

    An `in_segment` slug naming no segment is not an error here: it matches nobody.
    `few_contacts`: the Q will be evaluated for a handful of contacts (see matching_contacts).
    """
    slugs = referenced_slugs(rule)
    full_registry = fields is not None or reads_rows(rule)
    fields = fields if fields is not None else get_fields(properties=full_registry)
    errors = validate_rule(rule, segment_slugs=slugs, fields=fields)
    if errors and not full_registry:
        # A rule without props.* needs no PropertyDefinition query, unless it is wrong: then the
        # errors' suggestions come from every field, as everywhere else.
        errors = validate_rule(rule, segment_slugs=slugs, fields=get_fields())
    if errors or not isinstance(rule, dict):
        raise InvalidRule(errors)
    segment_ids = dict(Segment.objects.filter(slug__in=slugs).values_list("slug", "pk")) if slugs else {}
    return _Compiler(fields, now, segment_ids, thresholds or {}, few_contacts=few_contacts).node(rule)


def _number(value: int | float) -> Value:
    # An int stays an int (exact, index-friendly); anything else compares as double precision.
    return Value(value) if isinstance(value, int) else Value(float(value))


def _cents(amount: int | float) -> int:
    return round(amount * 100)


def threshold_key(path: str, op: str, value: object) -> str:
    """How a percent condition's threshold is stored: by condition, wherever it sits in a rule."""
    return f"{path} {op} {value}"


def percent_threshold(field: Field, op: str, percent: float) -> PercentThreshold:
    """A top/bottom_percent threshold measured live: one uncorrelated subquery over all contacts."""
    expr = value_expression(field)
    top = op == "top_percent"
    return PercentThreshold(expr, set_condition(field, expr), percent, top=top, output_field=FloatField())


class _Compiler:
    def __init__(
        self,
        fields: dict[str, Field],
        now: datetime,
        segment_ids: dict[str, int],
        thresholds: Thresholds,
        *,
        few_contacts: bool,
    ) -> None:
        self.fields, self.now, self.segment_ids, self.thresholds = fields, now, segment_ids, thresholds
        self.few_contacts = few_contacts

    def node(self, rule: dict, *, negated: bool = False) -> Q:
        """`rule`, or with `negated` its negation, pushed down to the conditions (De Morgan).

        PostgreSQL turns an EXISTS or NOT EXISTS into a join only where it sits in an AND (a NOT
        around a group would keep it a subplan run per contact), and it pulls subqueries up before
        it simplifies NOTs, so the compiler does it.
        """
        if "all" in rule or "any" in rule:
            children = [self.node(child, negated=negated) for child in rule["all" if "all" in rule else "any"]]
            return reduce(and_ if ("all" in rule) != negated else or_, children)
        if "not" in rule:
            return self.node(rule["not"], negated=not negated)
        if "event" in rule:
            return self.event(rule, negated=negated)
        if "in_segment" in rule:
            # By id, not through a join on the slug: the planner then knows how many members
            # that segment has (its statistics), and joins them in the right order.
            segment_id = self.segment_ids.get(rule["in_segment"])
            # No such segment: nobody (a membership always names its segment).
            of_segment = {"segment_id": segment_id} if segment_id is not None else {"segment_id__isnull": True}
            member = Q(Exists(Membership.objects.filter(contact=OuterRef("pk"), **of_segment)))
            return ~member if negated else member
        field = self.fields[rule["field"]]
        condition = self.condition(field, rule["op"], rule.get("value"))
        return ~condition if negated else condition

    # Property conditions

    def condition(self, field: Field, op: str, value) -> Q:
        expr = value_expression(field)
        is_set = set_condition(field, expr)
        if op == "is_set":
            return is_set
        if op == "is_not_set":
            return ~is_set
        compare = getattr(self, f"{field.type}_condition")
        return is_set & compare(field, expr, op, value)

    def text_condition(self, field: Field, expr, op: str, value) -> Q:
        folded = Fold(expr)
        if op in ("in", "not_in"):
            match = Q(In(folded, sorted({fold(item) for item in value})))
            return ~match if op == "not_in" else match
        lookup = {
            "eq": Exact,
            "neq": Exact,
            "contains": Contains,
            "starts_with": StartsWith,
            "ends_with": EndsWith,
        }[op]
        match = Q(lookup(folded, fold(value)))
        return ~match if op == "neq" else match

    def choice_condition(self, field: Field, expr, op: str, value) -> Q:
        match = Q(In(expr, sorted(set(value)))) if op in ("in", "not_in") else Q(Exact(expr, value))
        return ~match if op in ("neq", "not_in") else match

    def number_condition(self, field: Field, expr, op: str, value) -> Q:
        if op in PERCENT_OPS:
            key = threshold_key(field.path, op, value)
            threshold: Expression
            if key not in self.thresholds:
                threshold = percent_threshold(field, op, value)
            elif (stored := self.thresholds[key]) is None:
                return Q(Exact(Value(1), 0))  # no contact had a set value: nobody qualifies
            else:
                # A threshold is one of the values: a whole one compares as an integer, so that an
                # integer column keeps its index (compared with 90.0 it was cast to numeric row by
                # row: a seq scan, 676 vs 445 ms for a top-10% refresh at 1M contacts).
                threshold = _number(int(stored) if float(stored).is_integer() else float(stored))
            top = op == "top_percent"
            return Q(GreaterThanOrEqual(expr, threshold) if top else LessThanOrEqual(expr, threshold))
        if op == "between":
            return Q(GreaterThanOrEqual(expr, _number(value[0]))) & Q(LessThanOrEqual(expr, _number(value[1])))
        if op == "neq":
            return ~Q(Exact(expr, _number(value)))
        lookup = {
            "eq": Exact,
            "gt": GreaterThan,
            "gte": GreaterThanOrEqual,
            "lt": LessThan,
            "lte": LessThanOrEqual,
        }[op]
        return Q(lookup(expr, _number(value)))

    def bool_condition(self, field: Field, expr, op: str, value) -> Q:
        return Q(Exact(expr, op == "is_true"))

    def date_condition(self, field: Field, expr, op: str, value) -> Q:
        if op in ("in_last_days", "in_next_days", "more_than_days_ago"):
            low, high = relative_bounds(field.type, op, value, now=self.now)
            if low is None:
                return Q(LessThan(expr, self.date_operand(field, high)))
            return Q(GreaterThanOrEqual(expr, self.date_operand(field, low))) & Q(
                LessThanOrEqual(expr, self.date_operand(field, high))
            )
        if op == "before":
            return Q(LessThan(expr, self.date_operand(field, bounds(field.type, value)[0])))
        if op == "after":
            return Q(GreaterThan(expr, self.date_operand(field, bounds(field.type, value)[1])))
        low, high = bounds(field.type, value[0])[0], bounds(field.type, value[1])[1]
        return Q(GreaterThanOrEqual(expr, self.date_operand(field, low))) & Q(
            LessThanOrEqual(expr, self.date_operand(field, high))
        )

    datetime_condition = date_condition

    def date_operand(self, field: Field, moment) -> Value:
        if field.property_key:
            return Value(moment.isoformat())  # custom date properties hold ISO text
        return Value(moment, output_field=DateField() if field.type == "date" else DateTimeField())

    def tags_condition(self, field: Field, expr, op: str, value) -> Q:
        tags = [fold(tag) for tag in value]
        if op == "contains_all":
            return reduce(and_, (Q(HasTag(expr, [tag])) for tag in sorted(set(tags))))
        match = Q(HasTag(expr, tags))
        return ~match if op == "contains_none" else match

    # Event conditions

    def event(self, rule: dict, *, negated: bool) -> Q:
        """EXISTS over the contacts `event_contacts` gives, or NOT EXISTS: see the module doc."""
        if self.few_contacts:
            test, own = event_contacts(rule, now=self.now, contact=OuterRef("pk"))
            among = Q(Exists(own))
        else:
            test, contacts = event_contacts(rule, now=self.now)
            among = Q(AmongContacts(contacts))
        return ~among if test.holds_without_activity != negated else among


@dataclass(frozen=True)
class _CountTest:
    """An event condition as a test of its contacts' activities: `aggregate` (`n`, the count, or
    `cents`, the sum of value in cents) compared by `lookup` with `operand`."""

    aggregate: str
    lookup: str
    operand: int

    @property
    def holds_without_activity(self) -> bool:
        """True for a contact with no matching activity (a count of 0, an empty sum of 0)."""
        return {"gte": ge, "lte": le, "exact": eq}[self.lookup](0, self.operand)

    @property
    def presence_only(self) -> bool:
        """Passing depends only on whether a contact has a matching activity (performed,
        not_performed, count_gte 1, count_lte 0, count_eq 0)."""
        return self.aggregate == "n" and (self.lookup, self.operand) in {("gte", 1), ("lte", 0), ("exact", 0)}

    def kept(self) -> Q:
        """The test a contact in the grouped set passes: the condition, or where it holds without
        activity, its negation (such contacts are never in a grouped set, so they are left out)."""
        passes = Q(**{f"{self.aggregate}__{self.lookup}": self.operand})
        return ~passes if self.holds_without_activity else passes


def _count_test(op: str, value) -> _CountTest:
    if op == "performed":
        return _CountTest("n", "gte", 1)
    if op == "not_performed":
        return _CountTest("n", "lte", 0)
    if op == "sum_gte":
        return _CountTest("cents", "gte", _cents(value))
    return _CountTest("n", {"count_gte": "gte", "count_lte": "lte", "count_eq": "exact"}[op], value)


def event_contacts(rule: dict, *, now: datetime, contact: OuterRef | None = None) -> tuple[_CountTest, QuerySet]:
    """The grouped set of an event condition: its test, and the ids (a `member` column) of the
    contacts with matching activities that pass `test.kept()`. The condition holds for a contact
    in the set, or, where `test.holds_without_activity`, for a contact not in it.

    With `contact`, only that contact's activities are grouped (a correlated subquery that
    probes them on (contact, kind, time)), or, where only their presence matters, not even grouped.
    """
    test = _count_test(rule["op"], rule.get("value"))
    if _tallied(rule) and contact is None:
        return test, _tallied_contacts(rule["event"]["kind"], test, now=now)
    activities = matching_activities(rule["event"], within_days=rule.get("within_days"), now=now)
    if contact is not None:
        activities = activities.filter(contact=contact)
        if test.presence_only:
            return test, activities
    return test, _grouped(activities, test)


def _tallied(rule: dict) -> bool:
    """An all-time count of one kind of activity, which ActivityTally holds per contact."""
    counts = rule["op"] != "sum_gte"
    return counts and set(rule["event"]) == {"kind"} and not rule.get("within_days")


def _tallied_contacts(kind: str, test: _CountTest, *, now: datetime) -> QuerySet:
    """The contacts whose count of `kind` activities up to `now` passes `test.kept()`, from the
    tally, one row each.

    The tally counts all of a contact's activities of the kind; that is the count up to `now`
    unless one is dated after `now` (a refresh at a past time, an activity dated ahead). The
    few contacts with one are found by the (kind, occurred_at) index and counted from Activity.
    """
    later = Activity.objects.filter(kind=kind, occurred_at__gt=now)
    tallied = ActivityTally.objects.filter(test.kept(), kind=kind)
    # NOT EXISTS, not NOT IN: an anti-join whatever the size (many later activities, a refresh at a
    # past time, would not fit NOT IN's hash, and PostgreSQL would rescan them for every row).
    counted = tallied.filter(~Exists(later.filter(contact=OuterRef("contact_id")))).values(member=F("contact"))
    recounted = _grouped(
        Activity.objects.filter(kind=kind, occurred_at__lte=now, contact_id__in=later.values("contact_id")), test
    )
    return counted.union(recounted, all=True)


def _value_cents():
    return Round(F("value") * 100)


def _grouped(activities: QuerySet[Activity], test: _CountTest) -> QuerySet[Activity]:
    """The contacts of `activities` that pass `test.kept()`, one row each."""
    # An empty sum (every value missing) is 0, as the design says. count(*), not count(id): the
    # (kind, occurred_at) index covers contact_id, not id.
    cents = Coalesce(Sum(_value_cents()), 0, output_field=FloatField())
    aggregate = cents if test.aggregate == "cents" else Count("*")
    grouped = activities.order_by().values(member=F("contact")).annotate(**{test.aggregate: aggregate})
    # "member" is the alias values() gave above; the stubs' plugin does not follow it.
    return grouped.filter(test.kept()).values("member")  # type: ignore[misc]


def matching_activities(filters: dict, *, within_days: int | None, now: datetime) -> QuerySet[Activity]:
    """Activities passing an event condition's filters, in its window ending at `now`."""
    activities = Activity.objects.filter(kind=filters["kind"], occurred_at__lte=now)
    if within_days:
        activities = activities.filter(occurred_at__gte=now - timedelta(days=within_days))
    for key in ("topic", "product", "campaign"):
        if key in filters:
            activities = activities.filter(Exact(Fold(key), fold(filters[key])))
    if "url_contains" in filters:
        activities = activities.filter(Contains(Fold("url"), fold(filters["url_contains"])))
    return activities


def value_expression(field: Field):
    """The SQL expression for a field's value, read from a Contact row."""
    if field.score:
        model_id, column = field.score
        scores = PropensityScore.objects.filter(model_id=model_id, contact_id=OuterRef("pk"))
        return Subquery(scores.values(column)[:1])
    if field.property_key:
        return PropertyValue(field.property_key, field.type)
    if field.type == "tags":
        return TagList(F(field.lookup))
    return F(field.lookup)


def set_condition(field: Field, expr) -> Q:
    """The value is present: not NULL and, for text-like values, not the empty string."""
    present = Q(IsNull(expr, False))
    if field.type in _TEXT_LIKE or (field.type == "date" and field.property_key):
        present &= ~Q(Exact(expr, ""))
    return present
