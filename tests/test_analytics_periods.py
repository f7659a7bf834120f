"""Reading periods for the analytics: calendar forms, ranges, and the inputs that are refused."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from contacts.retention import first_kept_at
from segments.analytics.periods import BadParameter, last_full_quarter, parse_period, periods_between


@pytest.mark.parametrize(
    ("text", "first", "last", "grain"),
    [
        ("2026Q3", date(2026, 7, 1), date(2026, 9, 30), "quarter"),
        ("2026-q1", date(2026, 1, 1), date(2026, 3, 31), "quarter"),
        ("2026-02", date(2026, 2, 1), date(2026, 2, 28), "month"),
        ("2026-W01", date(2025, 12, 29), date(2026, 1, 4), "week"),
        ("2026-07-14", date(2026, 7, 14), date(2026, 7, 14), "day"),
        ("2026-07-01..2026-09-30", date(2026, 7, 1), date(2026, 9, 30), "quarter"),
        ("2026-07-03..2026-08-09", date(2026, 7, 3), date(2026, 8, 9), None),
    ],
)
def test_it_reads_each_form(text, first, last, grain):
    period = parse_period(text)
    assert (period.first, period.last, period.grain) == (first, last, grain)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-09-30..2026-07-01", "ends (2026-07-01) before it starts (2026-09-30)"),
        ("2020-01-01..2026-01-01", "longer than the 3 years"),
        ("2026Q5", "is not a period"),
        ("2026-13", "is not a real date"),
        ("last quarter", "is not a period"),
    ],
)
def test_it_refuses_bad_periods_naming_the_parameter(text, says):
    with pytest.raises(BadParameter) as raised:
        parse_period(text, parameter="period")
    assert raised.value.parameter == "period"
    assert str(raised.value).startswith("period: ")
    assert says in str(raised.value)


def test_three_years_to_the_day_are_allowed():
    assert parse_period("2024-01-01..2026-12-31").days == 1096


def test_last_full_quarter_and_the_periods_between():
    assert last_full_quarter(date(2026, 12, 6)).label == "2026Q3"
    assert last_full_quarter(date(2026, 1, 1)).label == "2025Q4"
    weeks = periods_between(date(2026, 7, 1), date(2026, 7, 31), "week")
    assert [w.label for w in weeks] == ["2026-W27", "2026-W28", "2026-W29", "2026-W30", "2026-W31"]


def test_a_range_before_the_activities_kept_is_refused_with_retention_on(settings):
    """A range that is no calendar period is computed from the activities, so with retention on it
    may not start before the first month kept; calendar periods are read from stored rows."""
    today = timezone.localdate()
    settings.ACTIVITY_RETENTION_MONTHS = 3
    kept = timezone.localdate(first_kept_at())
    before = kept - timedelta(days=1)
    with pytest.raises(BadParameter) as raised:
        parse_period(f"{before}..{today}")
    assert raised.value.parameter == "period"
    assert f"before {kept}, the first day whose activities are kept (ACTIVITY_RETENTION_MONTHS=3)" in str(raised.value)
    assert parse_period(f"{kept + timedelta(days=1)}..{today}").first == kept + timedelta(days=1)
    quarter_before = last_full_quarter(before + timedelta(days=1))  # ends before the cut: a stored period
    assert parse_period(f"{quarter_before.first}..{quarter_before.last}").grain == "quarter"
    settings.ACTIVITY_RETENTION_MONTHS = 0
    assert parse_period(f"{before}..{today}").first == before
