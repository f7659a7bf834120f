"""Property test: the rollup credits each activity to a segment exactly when its contact was a member
at that instant, whatever the membership history and the time zone. The oracle walks the history
and the activities in Python, one by one; the rollup (segments/analytics/rollup.py) takes the days
a membership covers whole by contact and day, and the periods it covers whole by contact and period,
and reads only the rest activity by activity: the two must agree for every period and grain."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.models import Activity
from segments.analytics import rollup
from segments.analytics.periods import local_midnight
from segments.analytics.updates import periods_for
from segments.models import Membership, MembershipChange
from tests.factories import ContactFactory, SegmentFactory

BASE = date(2026, 8, 1)  # everything happens within a few days of it: July and August, Q3
KINDS = ["email_open", "email_click", "site_visit", "content_download", "purchase"]


def instant(day_offset: int, minutes: int) -> datetime:
    """A local time: `minutes` after local midnight of BASE + day_offset (0 is midnight exactly)."""
    return local_midnight(BASE + timedelta(days=day_offset)) + timedelta(minutes=minutes)


instants = st.builds(instant, st.integers(-5, 5), st.sampled_from([0, 0, 1, 59, 600, 1439]))
contacts = st.fixed_dictionaries(
    {
        "changes": st.lists(instants, max_size=4, unique=True).map(sorted),
        "leave_first": st.booleans(),  # a member before history began, whose first change is a leave
        "member_without_history": st.booleans(),
        "activities": st.lists(st.tuples(st.sampled_from(KINDS), instants), max_size=6),
    }
)


def intervals(row: dict) -> list[tuple[datetime | None, datetime | None]]:
    """[start, end) per issue 22: join to the next change, a leading leave from before history."""
    kinds = ["leave", "join"] if row["leave_first"] else ["join", "leave"]
    changes = [(kinds[i % 2], at) for i, at in enumerate(row["changes"])]
    if not changes:
        return [(instant(-400, 0), None)] if row["member_without_history"] else []
    spans = [(None, changes[0][1])] if changes[0][0] == "leave" else []
    for i, (kind, at) in enumerate(changes):
        if kind == "join":
            spans.append((at, changes[i + 1][1] if i + 1 < len(changes) else None))
    return spans


def member_at(spans, at: datetime) -> bool:
    return any((start is None or start <= at) and (end is None or at < end) for start, end in spans)


def expected(rows: list[dict], period) -> tuple:
    engaged = opens = purchases = responders = 0
    value = Decimal(0)
    for row in rows:
        spans = intervals(row)
        credited = [
            (kind, at)
            for kind, at in row["activities"]
            if period.start_at <= at < period.end_at and member_at(spans, at)
        ]
        engaged += any(kind != "purchase" for kind, _ in credited)
        responders += any(kind in ("email_open", "email_click") for kind, _ in credited)
        opens += sum(kind == "email_open" for kind, _ in credited)
        purchases += sum(kind == "purchase" for kind, _ in credited)
        value += sum((Decimal("10.00") for kind, _ in credited if kind == "purchase"), Decimal(0))
    return engaged, opens, purchases, value, responders


def build(rows: list[dict]) -> int:
    segment = SegmentFactory(kind="static", rule=None)
    for row in rows:
        contact = ContactFactory(created_at=datetime(2026, 1, 1, tzinfo=UTC))
        kinds = ["leave", "join"] if row["leave_first"] else ["join", "leave"]
        for i, at in enumerate(row["changes"]):
            MembershipChange.objects.create(
                segment=segment, contact=contact, kind=kinds[i % 2], reason="rule", changed_at=at
            )
        if (row["changes"] and (len(row["changes"]) + row["leave_first"]) % 2 == 1) or (
            not row["changes"] and row["member_without_history"]
        ):
            Membership.objects.create(segment=segment, contact=contact, joined_at=instant(-400, 0))
        for kind, at in row["activities"]:
            value = Decimal("10.00") if kind == "purchase" else None
            Activity.objects.create(contact=contact, kind=kind, occurred_at=at, value=value)
    return segment.pk


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(contacts, min_size=1, max_size=4), zone=st.sampled_from(["UTC", "Pacific/Auckland"]))
def test_every_period_credits_what_the_members_did_while_members(db, rows, zone):
    with transaction.atomic(), override_settings(TIME_ZONE=zone):
        segment_id = build(rows)
        days = {BASE + timedelta(days=n) for n in range(-6, 7)}
        for periods in periods_for(days).values():
            computed = rollup.compute(periods, segment_ids=[segment_id], database=False)
            by_period = {(s.grain, s.period_start): s for s in computed.stats}
            email = {(r.grain, r.period_start): r.responders for r in computed.responses if r.channel == "email"}
            for period in periods:
                stat = by_period[(period.grain, period.first)]
                got = (
                    stat.engaged,
                    stat.opens,
                    stat.purchases,
                    stat.purchase_value,
                    email.get((period.grain, period.first), 0),
                )
                assert got == expected(rows, period), (period, got)
        transaction.set_rollback(True)
