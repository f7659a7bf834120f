"""The incremental analytics update stores what a full recompute of the same periods stores.

After a backfill, batches of changes land (activities, joins, leaves and rejoins with outcomes on
their instants, deals created and then won, stage moves, campaigns, a new contact, a day later, a
new week) and after each the update runs; every stored row (stats, responses by channel and
campaign, stages, joins and leaves) must equal `rollup.compute` of those periods from scratch.
"""

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.models import Contact, Deal, LifecycleChange
from segments.analytics import rollup, updates
from segments.analytics.periods import local_midnight, period_of
from segments.models import (
    AnalyticsMemberFigure,
    Membership,
    SegmentChangeStat,
    SegmentResponse,
    SegmentStageStat,
    SegmentStat,
)
from tests.analytics_support import activity, build_world, change
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

STAT_FIELDS = [
    "members_start",
    "members_end",
    "members_during",
    "avg_members",
    "engaged",
    "opens",
    "clicks",
    "converted",
    "won_deals",
    "won_amount",
    "purchases",
    "purchase_value",
    "deals_created",
    "pipeline_created",
]


def stored_periods():
    keys = SegmentStat.objects.values_list("grain", "period_start").distinct()
    return sorted({period_of(first, grain) for grain, first in keys})


def stored_form(value):
    """A figure as its column stores it (SQLite sums amounts as floats; the column keeps cents)."""
    return Decimal(value).quantize(Decimal("0.01")) if isinstance(value, Decimal) else value


def snapshot(stats, responses, stages, changes):
    """Comparable rows: stats keyed by segment and period (revenue_sq apart: a float sum)."""
    return (
        {
            (s.segment_id, s.grain, s.period_start): tuple(stored_form(getattr(s, name)) for name in STAT_FIELDS)
            for s in stats
        },
        {(s.segment_id, s.grain, s.period_start): s.revenue_sq for s in stats},
        sorted(
            (r.segment_id or 0, r.grain, r.period_start, r.channel, r.campaign, r.responders, r.activities, r.converted)
            for r in responses
        ),
        sorted(
            (t.segment_id or 0, t.grain, t.period_start, t.stage, t.reached, t.converted, t.from_previous)
            for t in stages
        ),
        sorted((c.segment_id, c.grain, c.period_start, c.kind, c.reason, c.n) for c in changes),
    )


def assert_stored_equals_full_recompute():
    periods = stored_periods()
    ids = updates.analysed_segment_ids()
    full = rollup.compute(periods, segment_ids=ids)
    wanted = snapshot(full.stats, full.responses, full.stages, full.changes)
    stored = snapshot(
        SegmentStat.objects.all(),
        SegmentResponse.objects.all(),
        SegmentStageStat.objects.all(),
        SegmentChangeStat.objects.all(),
    )
    assert stored[0].keys() == wanted[0].keys()
    for key, figures in wanted[0].items():
        assert stored[0][key] == figures, key
    for key, spread in wanted[1].items():
        assert stored[1][key] == pytest.approx(spread, rel=1e-12, abs=1e-9), key
    assert stored[2] == wanted[2]
    assert stored[3] == wanted[3]
    assert stored[4] == wanted[4]


def join(segment, contact, when):
    change(segment, contact, "join", when)
    Membership.objects.update_or_create(segment=segment, contact=contact, defaults={"joined_at": when})


def leave(segment, contact, when):
    change(segment, contact, "leave", when)
    Membership.objects.filter(segment=segment, contact=contact).delete()


def test_every_update_stores_what_a_full_recompute_stores():
    world = build_world()
    segment = world.segment
    today = timezone.localdate()
    midnight = local_midnight(today)

    def hour(h: float, *, day: date = today) -> datetime:
        return local_midnight(day) + timedelta(hours=h)

    yesterday = today - timedelta(days=1)
    g = ContactFactory(created_at=midnight - timedelta(days=300), lifecycle_changed_at=midnight)
    activity(world.a, "email_open", hour(-40 * 24), campaign="autumn")  # earlier in the quarter
    updates.backfill(today - timedelta(days=20))
    assert_stored_equals_full_recompute()
    assert AnalyticsMemberFigure.objects.exists()

    # 1. activities today and yesterday, one with a campaign, a purchase
    activity(world.a, "email_open", hour(1), campaign="winter")
    activity(world.b, "site_visit", hour(20, day=yesterday))
    activity(world.f, "purchase", hour(2), value="40.00")
    result = updates.update_analytics()
    assert result["full_groups"] == 0
    assert_stored_equals_full_recompute()

    # 2. G joins with a click on the join instant; B leaves with an open on the leave instant
    join(segment, g, hour(3))
    activity(g, "email_click", hour(3), campaign="winter")
    leave(segment, world.b, hour(4))
    activity(world.b, "email_open", hour(4), campaign="winter")
    Deal.objects.create(name="B next", contact=world.b, amount=Decimal("700.00"), stage="open", created_at=hour(4.5))
    result = updates.update_analytics()
    assert result["full_groups"] == 0
    assert_stored_equals_full_recompute()

    # 3. B rejoins; B's deal is won and B becomes a customer; F moves lead -> MQL; a new contact
    join(segment, world.b, hour(5))
    Deal.objects.filter(name="B next").update(stage="won", closed_at=timezone.now())
    LifecycleChange.objects.create(contact=world.b, from_stage="opportunity", to_stage="customer", changed_at=hour(5.5))
    LifecycleChange.objects.create(contact=world.f, from_stage="lead", to_stage="mql", changed_at=hour(6))
    h = ContactFactory(created_at=hour(6.5), lifecycle_changed_at=hour(6.5))
    activity(h, "form_submit", hour(7), campaign="winter")
    ContactFactory(
        created_at=hour(-5 * 24 + 9), lifecycle_changed_at=hour(-5 * 24 + 9)
    )  # found late, from before the week
    activity(world.a, "purchase", hour(7), value="12.34")
    result = updates.update_analytics()
    assert result["full_groups"] == 0
    assert_stored_equals_full_recompute()

    # 4. a late activity from last week, and a deal won by a contact outside the segment
    activity(world.c, "content_download", hour(10, day=today - timedelta(days=3)))
    activity(world.f, "email_click", hour(9, day=today - timedelta(days=2)), campaign="autumn")
    Deal.objects.create(
        name="D won", contact=world.d, amount=Decimal("90.00"), stage="won", created_at=hour(1), closed_at=hour(2)
    )
    result = updates.update_analytics()
    assert result["full_groups"] == 0
    assert_stored_equals_full_recompute()

    # 5. the next day: G leaves at midnight, outcomes on the new day
    tomorrow = today + timedelta(days=1)
    leave(segment, g, local_midnight(tomorrow))
    activity(g, "email_open", local_midnight(tomorrow))
    activity(world.a, "email_click", hour(2, day=tomorrow))
    result = updates.update_analytics(now=hour(3, day=tomorrow))
    assert result["full_groups"] == 0
    assert_stored_equals_full_recompute()

    # 6. a week later: a new week (and maybe month) begins, G rejoins on it
    later = today + timedelta(days=7)
    join(segment, g, hour(1, day=later))
    activity(g, "site_visit", hour(2, day=later))
    activity(world.b, "webinar_attend", hour(2, day=later - timedelta(days=2)))
    result = updates.update_analytics(now=hour(3, day=later))
    assert result["full_groups"] == 0
    assert_stored_equals_full_recompute()

    # 7. a membership change dated before the open periods: recomputed in full, still equal
    change(segment, world.d, "join", hour(12, day=today - timedelta(days=15)))
    Membership.objects.create(segment=segment, contact=world.d, joined_at=hour(12, day=today - timedelta(days=15)))
    result = updates.update_analytics(now=hour(4, day=later))
    assert result["full_groups"] >= 1
    assert_stored_equals_full_recompute()
    assert Contact.objects.count() == 9


def queries_of_an_update(world, contacts) -> int:
    for contact in contacts:
        activity(contact, "email_open", timezone.now() - timedelta(minutes=5))
    with CaptureQueriesContext(connection) as queries:
        result = updates.update_analytics()
    assert result["full_groups"] == 0
    return len(queries)


def test_the_update_makes_as_many_queries_for_many_touched_contacts_as_for_one():
    world = build_world()
    updates.backfill(timezone.localdate() - timedelta(days=3))
    one = queries_of_an_update(world, [world.a])
    many = queries_of_an_update(world, [world.a, world.b, world.c, world.d, world.e, world.f])
    assert many == one
