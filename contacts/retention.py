"""Activity retention (PostgreSQL): months older than ACTIVITY_RETENTION_MONTHS are dropped, once
every measure that reads them has been computed (docs/scale.md, "Retention").

- Kept: this month and the N months before it, in UTC months as the partitions are. Each night
  (`apply_retention`, scheduled after the metrics and analytics runs) a month partition that ends
  on or before the cut (the first of this month, N months back) is detached and dropped; rows the
  DEFAULT partition holds from before the cut (older than the migration's 120 months, or ingested
  late for a month already dropped) are deleted through the parent table.
- Only once read: a month goes only when every check passes for it. Ours: the last full metrics
  run is as of the month's end or later, and neither the active scoring model's windows nor list
  hygiene's HYGIENE_INACTIVE_DAYS reach further back than the months kept
  (`rfv_frequency_window_days` 0, all time, keeps everything). Other apps add theirs
  with `add_check` (segments: the analytics rollups have rolled the month up, and no live segment's
  rule reads further back). A month that fails one is left, and the log says which and why.
- Dropped, not kept aside: a detached table would keep personal data out of reach of erasure and
  activities out of reach of merges, so the table is dropped in the same transaction as its
  detach. Dump it first (`pg_dump -t contacts_activity_pYYYYMM`) to keep an archive.
- Tallies follow: the months' counts are subtracted from ActivityTally in the same transaction
  (detaching fires no delete trigger), so the tally is always the count of the stored activities.
  An event condition's "all time" is then all activities kept, whichever path counts it (the tally,
  the grouped activities, a scoped refresh's probe, the explainer). The months' external ids are
  freed as a delete would free them.
- Writes to the activity table wait while a month goes (SHARE lock on the parent, then the
  detach's ACCESS EXCLUSIVE); reads wait only for the detach and drop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import connection, transaction

from contacts.models import MetricsRun, ScoringModel
from contacts.partitions import (
    ACTIVITY,
    DEFAULT_PARTITION,
    KEYS,
    add_months,
    existing_months,
    month_start,
    partition_name,
    partitioned,
)

logger = logging.getLogger(__name__)

TALLY = "contacts_activitytally"
SCHEDULE_NAME = "contacts: drop activity months past retention"


@dataclass(frozen=True)
class Span:
    """Activities about to go: every row of `table` dated before `end` (`rows` of them), under a
    retention of `months` months."""

    table: str
    end: datetime
    rows: int
    months: int


# A check returns why a span cannot go yet, or None when what it guards has read the span.
Check = Callable[[Span], str | None]
_checks: list[Check] = []


def add_check(check: Check) -> None:
    """Hold every month back until `check(span)` returns None for it."""
    if check not in _checks:
        _checks.append(check)


@dataclass
class Retention:
    """What one run did: the partitions dropped, the rows they and DEFAULT held, what was left and why."""

    months: int
    dropped: list[str] = field(default_factory=list)
    rows: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def __str__(self) -> str:
        if self.note:
            return self.note
        parts = [f"kept {self.months} months: dropped {', '.join(self.dropped) or 'nothing'} ({self.rows} activities)"]
        parts += [f"left {table}: {reason}" for table, reason in self.skipped.items()]
        return "; ".join(parts)


def retained_days(months: int) -> int:
    """The fewest days the months kept cover: from the cut to the first of this month, over every
    month of a four-year cycle (12 months keep at least 365 days, 1 month at least 28)."""
    firsts = [date(2024, 1, 1), *(add_months(date(2024, 1, 1), n) for n in range(1, 48))]
    return min((first - add_months(first, -months)).days for first in firsts)


def cut(months: int, *, today: date | None = None) -> date:
    """The first day kept (UTC): the first of this month, `months` months back."""
    return add_months(month_start(today or datetime.now(UTC).date()), -months)


def first_kept_at(*, today: date | None = None) -> datetime | None:
    """The first instant retention keeps activities from (UTC), or None with retention off."""
    months = settings.ACTIVITY_RETENTION_MONTHS
    return _instant(cut(months, today=today)) if months else None


def apply_retention(*, months: int | None = None, today: date | None = None) -> Retention:
    """Drop the months before the cut that every check lets go; running it again changes nothing."""
    months = settings.ACTIVITY_RETENTION_MONTHS if months is None else months
    result = Retention(months=months)
    if not months:
        result.note = "retention off (ACTIVITY_RETENTION_MONTHS is 0): every activity is kept"
        return result
    if not partitioned():
        result.note = "retention needs PostgreSQL's monthly partitions of the activity table: nothing dropped"
        logger.warning("activity retention: %s", result.note)
        return result
    first_kept = cut(months, today=today)
    with connection.cursor() as cursor:
        old = sorted(month for month in existing_months(cursor) if add_months(month, 1) <= first_kept)
    for month in old:
        _drop_if_read(partition_name(month), end=_instant(add_months(month, 1)), result=result, whole=True)
    _drop_if_read(DEFAULT_PARTITION, end=_instant(first_kept), result=result, whole=False)
    if result.dropped or result.rows:
        logger.info("activity retention: %s", result)
    return result


def _instant(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _drop_if_read(table: str, *, end: datetime, result: Retention, whole: bool) -> None:
    """Drop the partition `table` (whole) or delete DEFAULT's rows before `end`, if every check
    lets the span go. The span is measured under the lock that keeps writers out until the end."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {ACTIVITY} IN SHARE MODE")
        cursor.execute(f"SELECT count(*) FROM {table} WHERE occurred_at < %s", [end])
        (rows,) = cursor.fetchone()
        if not whole and not rows:
            return
        span = Span(table=table, end=end, rows=rows, months=result.months)
        reasons = [reason for check in [_metrics_read, *_checks] if (reason := check(span))]
        if reasons:
            result.skipped[table] = "; ".join(reasons)
            logger.warning("activity retention: %s kept (%s activities): %s", table, rows, "; ".join(reasons))
            return
        if whole:
            _untally(cursor, table)
            cursor.execute(f"ALTER TABLE {ACTIVITY} DETACH PARTITION {table}")
            # A table with deferred foreign-key checks pending (rows written earlier in the same
            # transaction) cannot be dropped: check them now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"DROP TABLE {table}")
            result.dropped.append(table)
        else:
            # Through the parent: its triggers keep the tally and free the external ids.
            cursor.execute(
                f"DELETE FROM {ACTIVITY} WHERE tableoid = %s::regclass AND occurred_at < %s", [DEFAULT_PARTITION, end]
            )
        result.rows += rows


def _untally(cursor, table: str) -> None:
    """What the delete triggers would do for every row of `table` (migrations 0009 and 0019)."""
    cursor.execute(
        f"""UPDATE {TALLY} AS tally SET n = greatest(tally.n - gone.n, 0)
        FROM (SELECT contact_id, kind, count(*) AS n FROM {table} GROUP BY contact_id, kind) AS gone
        WHERE tally.contact_id = gone.contact_id AND tally.kind = gone.kind"""
    )
    cursor.execute(
        f"""DELETE FROM {TALLY} AS tally USING (SELECT DISTINCT contact_id, kind FROM {table}) AS gone
        WHERE tally.contact_id = gone.contact_id AND tally.kind = gone.kind AND tally.n = 0"""
    )
    cursor.execute(
        f"""DELETE FROM {KEYS} AS stored USING {table} AS gone
        WHERE stored.external_id = gone.external_id AND stored.activity_id = gone.id"""
    )


def window_problem(months: int) -> str | None:
    """Why the windows the metrics and list hygiene read need more than `months` months kept, if
    they do: the active scoring model's, and HYGIENE_INACTIVE_DAYS."""
    model = ScoringModel.objects.filter(is_active=True).first() or ScoringModel()
    if model.rfv_frequency_window_days == 0:
        return "the active scoring model counts frequency over all time (rfv_frequency_window_days 0)"
    windows = {
        "rfv_frequency_window_days": model.rfv_frequency_window_days,
        "email_window_days": model.email_window_days,
        "web_window_days": model.web_window_days,
        "strong_intent_days": model.strong_intent_days,
        "HYGIENE_INACTIVE_DAYS": settings.HYGIENE_INACTIVE_DAYS,
    }
    name, longest = max(windows.items(), key=lambda item: item[1])
    kept = retained_days(months)
    if longest > kept:
        whose = "list hygiene's" if name.isupper() else "the active scoring model's"
        return f"{whose} {name} is {longest} days, and {months} months keep as few as {kept}"
    return None


def _metrics_read(span: Span) -> str | None:
    """The full metrics run has read the span, and no window of the metrics or list hygiene reaches
    past the months kept."""
    if problem := window_problem(span.months):
        return problem
    last = MetricsRun.objects.filter(full=True).order_by("-as_of").values_list("as_of", flat=True).first()
    if last is None:
        return "no full metrics run yet"
    if last < span.end:
        return f"the last full metrics run is as of {last:%Y-%m-%d %H:%M} UTC, before {span.end:%Y-%m-%d}"
    return None
