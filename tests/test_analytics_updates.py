"""Keeping the analytics rollups current: the backfill command, the incremental update, the schedule."""

from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from segments.analytics import updates
from segments.analytics.measures import segment_measures
from segments.analytics.periods import parse_period
from segments.models import AnalyticsState, SegmentStat
from tests.analytics_support import activity, at, build_world, change

pytestmark = pytest.mark.django_db

Q3 = parse_period("2026Q3")


@pytest.fixture
def world():
    world = build_world()
    call_command("compute_segment_analytics", "--since", "2026-06-01", stdout=StringIO())
    return world


def computed_at(grain: str, first: date):
    return SegmentStat.objects.get(segment__slug="analysed", grain=grain, period_start=first).computed_at


def test_the_backfill_stores_every_grain_from_the_date(world):
    q3 = segment_measures(world.segment, Q3)
    assert (q3.engaged, q3.revenue) == (4, Decimal("1150.00"))
    assert SegmentStat.objects.filter(segment=world.segment, grain="month", period_start=date(2026, 6, 1)).exists()
    assert not SegmentStat.objects.filter(period_start__lt=date(2026, 4, 1)).exists()  # Q2 from its start only
    assert AnalyticsState.objects.get().computed_through is not None


def test_an_activity_arriving_late_recomputes_only_the_periods_holding_its_day(world):
    # given the stored rollups and a late open by A on 3 Aug
    kept = [("month", date(2026, 7, 1)), ("day", date(2026, 8, 4))]
    before = {key: computed_at(*key) for key in kept}
    activity(world.a, "email_open", at(8, 3, 9))
    # when
    result = updates.update_analytics()
    # then the quarter, August, its week and its day moved; July and 4 Aug did not
    assert segment_measures(world.segment, Q3).opens_per_member * (245 / 92) == pytest.approx(4)
    assert segment_measures(world.segment, parse_period("2026-08-03")).engaged == 1
    assert {key: computed_at(*key) for key in kept} == before
    assert computed_at("quarter", date(2026, 7, 1)) > before[("month", date(2026, 7, 1))]
    assert result["backfill"] is False
    assert result["days"] < 10  # 3 Aug and today (plus any day since the backfill), not the whole history


def test_nothing_new_recomputes_today_only(world):
    july = computed_at("month", date(2026, 7, 1))
    result = updates.update_analytics()
    assert result["days"] == 1
    assert computed_at("month", date(2026, 7, 1)) == july


def test_a_membership_change_recomputes_the_days_after_it(world):
    change(world.segment, world.d, "join", at(9, 20, 12))
    updates.update_analytics()
    assert segment_measures(world.segment, Q3).members_end == 4  # A, B, D, F


def test_the_nightly_schedule_runs_the_update_through_django_q(world, settings):
    schedule = Schedule.objects.get(name=updates.SCHEDULE_NAME)  # made by migrate (crmseg_site/schedules.py)
    assert (schedule.schedule_type, schedule.func) == (Schedule.DAILY, "segments.tasks.update_analytics_task")
    activity(world.a, "email_open", at(8, 3, 9))
    task_id = async_task(schedule.func, sync=True)
    assert Task.objects.get(id=task_id).success
    assert segment_measures(world.segment, parse_period("2026-08-03")).engaged == 1


def test_ensure_schedules_creates_the_nightly_update_too():
    call_command("ensure_schedules", stdout=StringIO())
    assert Schedule.objects.filter(name=updates.SCHEDULE_NAME, schedule_type=Schedule.DAILY).exists()


@pytest.mark.parametrize(("since", "says"), [("2026-13-01", "is not a date"), ("2999-01-01", "in the future")])
def test_the_command_refuses_a_bad_since(since, says):
    with pytest.raises(CommandError, match=says):
        call_command("compute_segment_analytics", "--since", since)
