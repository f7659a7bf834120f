"""The incremental analytics update sees every committed change to its sources once, whatever the
commit order, ids or times: rows committed late, backdated or updated (triggers record the changed
hours, segments/analytics/updates.py reads them). The oracle is a backfill of the same span: after
each update the stored rollups equal what recomputing everything stores. Deletes are not changes
(migration 0019): a deleted contact or deal keeps its contribution to the periods it counted in."""

import threading
from datetime import date, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from contacts.models import Activity, Deal, LifecycleChange
from segments.analytics import updates
from segments.analytics.measures import segment_measures
from segments.analytics.periods import parse_period, period_of
from segments.models import (
    AnalyticsDirtyHour,
    AnalyticsGrain,
    SegmentChangeStat,
    SegmentResponse,
    SegmentStageStat,
    SegmentStat,
)
from tests.analytics_support import World, activity, at, build_world, change
from tests.factories import SegmentFactory

SINCE = date(2026, 6, 1)
STORED = {
    SegmentStat: [
        "segment_id",
        "grain",
        "period_start",
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
        "revenue_sq",
        "deals_created",
        "pipeline_created",
    ],
    SegmentResponse: ["segment_id", "grain", "period_start", "channel", "campaign", "responders", "activities"],
    SegmentStageStat: ["segment_id", "grain", "period_start", "stage", "reached", "converted", "from_previous"],
    SegmentChangeStat: ["segment_id", "grain", "period_start", "kind", "reason", "n"],
}


def stored() -> dict[str, list[tuple]]:
    return {model.__name__: sorted(model.objects.values_list(*fields), key=str) for model, fields in STORED.items()}


def assert_equal_to_a_backfill() -> None:
    """The stored rollups are what a backfill of the span the fixture computed stores."""
    incremental = stored()
    updates.backfill(SINCE)
    assert stored() == incremental


def revenue(world: World, day: date) -> list[Decimal]:
    """The segment's won amount on the day and in its week, month and quarter."""
    return [segment_measures(world.segment, period_of(day, grain)).won_amount for grain in AnalyticsGrain.values]


def day_stat(world: World, day: date) -> SegmentStat:
    return SegmentStat.objects.get(segment=world.segment, grain=AnalyticsGrain.DAY, period_start=day)


def computed(world: World) -> World:
    call_command("compute_segment_analytics", "--since", SINCE.isoformat(), stdout=StringIO())
    updates.update_analytics()  # anything before the stored history is let go
    return world


@pytest.fixture
def world(db) -> World:
    return computed(build_world())


def today_periods() -> int:
    return len(updates.periods_for({timezone.localdate()})[period_of(timezone.localdate(), AnalyticsGrain.QUARTER)])


def test_a_run_with_nothing_changed_recomputes_only_today(world):
    july = SegmentStat.objects.get(segment=world.segment, grain="month", period_start=date(2026, 7, 1))

    result = updates.update_analytics()

    assert (result["days"], result["periods"]) == (1, today_periods())
    assert not AnalyticsDirtyHour.objects.exists()
    assert SegmentStat.objects.get(pk=july.pk).computed_at == july.computed_at  # not rewritten


def test_a_row_inserted_with_an_id_below_what_the_last_run_read_is_picked_up(world):
    # given an id freed below the newest one, as a transaction that took it and committed late
    freed = Activity.objects.create(contact=world.a, kind="page_view", occurred_at=at(11, 2))
    Activity.objects.create(contact=world.a, kind="page_view", occurred_at=at(11, 2))
    freed_id = freed.pk
    freed.delete()
    updates.update_analytics()
    # when it arrives with that id, backdated into August
    Activity.objects.create(id=freed_id, contact=world.a, kind="email_open", occurred_at=at(8, 3, 9))
    updates.update_analytics()
    # then
    assert day_stat(world, date(2026, 8, 3)).opens == 1
    assert_equal_to_a_backfill()


def test_a_deal_won_with_a_close_time_40_days_back_counts_in_its_day_week_month_and_quarter(world):
    closed = timezone.now() - timedelta(days=40)
    day = timezone.localdate(closed)
    before = revenue(world, day)
    deal = Deal.objects.get(name="B new")  # B is a member again since 1 Sep

    Deal.objects.filter(pk=deal.pk).update(stage="won", closed_at=closed)
    updates.update_analytics()

    assert revenue(world, day) == [amount + Decimal("500.00") for amount in before]
    assert_equal_to_a_backfill()


def test_a_deal_moved_from_won_to_lost_leaves_its_day(world):
    assert revenue(world, date(2026, 9, 10))[0] == Decimal("1000.00")
    Deal.objects.filter(name="A won").update(stage="lost")
    updates.update_analytics()
    assert revenue(world, date(2026, 9, 10)) == [Decimal(0)] * 4
    assert_equal_to_a_backfill()


def test_a_deleted_won_deal_keeps_its_day(world):
    """Deleting never rewrites analytics history (migration 0019): the deal's revenue stays where
    it was counted."""
    Deal.objects.create(
        name="A again", contact=world.a, amount=Decimal("70.00"), stage="won", created_at=at(6, 1), closed_at=at(8, 20)
    )
    updates.update_analytics()
    assert revenue(world, date(2026, 8, 20))[0] == Decimal("70.00")

    Deal.objects.get(name="A again").delete()
    assert not AnalyticsDirtyHour.objects.exists()
    updates.update_analytics()

    assert revenue(world, date(2026, 8, 20))[0] == Decimal("70.00")


def test_an_activity_moved_to_another_contact_or_time_updates_both_days(world):
    Activity.objects.filter(contact=world.d, occurred_at=at(7, 1, 10)).update(contact=world.a, occurred_at=at(8, 4, 9))
    updates.update_analytics()
    assert day_stat(world, date(2026, 8, 4)).opens == 1
    assert_equal_to_a_backfill()


def test_a_backdated_lifecycle_change_and_membership_change_count(world):
    LifecycleChange.objects.create(contact=world.b, from_stage="lead", to_stage="customer", changed_at=at(9, 3, 10))
    change(world.segment, world.d, "join", at(8, 2, 12))
    updates.update_analytics()
    assert day_stat(world, date(2026, 9, 3)).converted == 1
    assert day_stat(world, date(2026, 8, 3)).members_end == 3  # A, D, F
    assert_equal_to_a_backfill()


def test_raw_insert_select_is_recorded_like_any_write(world):
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {Activity._meta.db_table}
                (contact_id, kind, occurred_at, topic, product, url, campaign, created_at)
            SELECT contact_id, 'email_click', %s, '', '', '', '', %s FROM {Activity._meta.db_table}
            WHERE contact_id = %s""",
            [at(8, 6, 9), timezone.now(), world.a.pk],
        )
    updates.update_analytics()
    assert day_stat(world, date(2026, 8, 6)).clicks == 3  # one per activity A had
    assert_equal_to_a_backfill()


def test_a_contact_deleted_after_its_outcome_keeps_its_contribution(world):
    """Issue 22: its activities, history and lifecycle changes go and its deals lose their contact,
    and none of it is recorded as a change, so the periods it counted in keep it; new data
    elsewhere is still picked up."""
    world.f.delete()
    assert not AnalyticsDirtyHour.objects.exists()
    activity(world.a, "email_open", at(11, 20, 9))
    updates.update_analytics()

    q3 = segment_measures(world.segment, parse_period("2026Q3"))
    assert q3.purchase_value == Decimal("150.00")  # F's 100 is still there
    assert q3.members_during == 5
    assert day_stat(world, date(2026, 11, 20)).opens == 1


def test_a_deleted_segments_history_dirties_nothing(world):
    other = SegmentFactory(name="Other", slug="other", kind="static", rule=None)
    change(other, world.a, "join", at(6, 2))
    updates.update_analytics()
    other.delete()

    result = updates.update_analytics()

    assert (result["days"], result["periods"]) == (1, today_periods())


def test_a_backfill_leaves_changes_outside_its_span_for_the_update(world):
    activity(world.a, "email_open", at(7, 15, 9))
    updates.backfill(date(2026, 9, 1))
    assert AnalyticsDirtyHour.objects.filter(source="activity").count() == 1  # 15 Jul waits
    updates.update_analytics()
    assert day_stat(world, date(2026, 7, 15)).opens == 1
    assert not AnalyticsDirtyHour.objects.exists()


def test_each_write_records_the_hours_it_touches(db):
    world = build_world()
    AnalyticsDirtyHour.objects.all().delete()
    deal = Deal.objects.get(name="B new")
    Deal.objects.filter(pk=deal.pk).update(stage="won", closed_at=at(10, 3, 7, 45))
    assert sorted(AnalyticsDirtyHour.objects.values_list("source", "hour")) == [
        ("deal", at(9, 5, 12)),  # created_at, old and new: one hour
        ("deal", at(10, 3, 7)),  # the new closed_at
    ]
    AnalyticsDirtyHour.objects.all().delete()
    Deal.objects.filter(pk=deal.pk).update(contact=None)  # as deleting its contact does: not recorded
    assert not AnalyticsDirtyHour.objects.exists()
    Deal.objects.filter(pk=deal.pk).update(contact=world.a)  # moved to a contact: recorded
    assert sorted(AnalyticsDirtyHour.objects.values_list("source", "hour")) == [
        ("deal", at(9, 5, 12)),
        ("deal", at(10, 3, 7)),
    ]
    AnalyticsDirtyHour.objects.all().delete()
    Activity.objects.filter(contact=world.a).delete()  # deletes: not recorded
    assert not AnalyticsDirtyHour.objects.exists()
    change(world.segment, world.d, "join", at(8, 2, 12, 30))
    assert list(AnalyticsDirtyHour.objects.values_list("source", "hour", "segment_id")) == [
        ("membership", at(8, 2, 12), world.segment.pk)
    ]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_row_committed_after_a_run_read_the_sources_is_picked_up_by_the_next_run():
    world = computed(build_world())
    inserted, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def late_writer() -> None:
        try:
            with transaction.atomic():  # takes its id now, commits after the run below
                activity(world.a, "email_open", at(8, 3, 9))
                inserted.set()
                release.wait(timeout=60)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    writer = threading.Thread(target=late_writer)
    writer.start()
    assert inserted.wait(timeout=60)
    activity(world.a, "email_click", at(8, 4, 9))  # a higher id, committed first
    updates.update_analytics()
    assert day_stat(world, date(2026, 8, 4)).clicks == 1
    assert day_stat(world, date(2026, 8, 3)).opens == 0  # not committed yet
    release.set()
    writer.join(timeout=60)
    assert errors == []

    updates.update_analytics()

    assert day_stat(world, date(2026, 8, 3)).opens == 1
    assert_equal_to_a_backfill()
