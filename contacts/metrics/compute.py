"""compute_metrics: refresh ContactMetrics for everyone (nightly) or for touched contacts (after ingest)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from contacts.changes import metrics_changed
from contacts.metrics import parallel
from contacts.metrics import vocabulary as pivot
from contacts.metrics.dialect import Dialect
from contacts.metrics.replace import replace_rows
from contacts.metrics.sql import (
    BASE_COLUMNS,
    LAPSE_DAYS,
    PAST_DAYS,
    RANKED_COLUMNS,
    TABLE,
    VELOCITY_DAYS,
    base_ctes,
    full_select,
    product_kinds,
    ranked_select,
    subset_statements,
)
from contacts.metrics.steps import Steps
from contacts.models import Activity, Contact, ContactMetrics, MetricsRun, ScoringModel

WORK_MEM = "384MB"
COLUMNS = BASE_COLUMNS + RANKED_COLUMNS
METRICS_LOCK_KEY = 0x5E6_0003 << 32  # beside the segment locks' namespaces (segments.locks)
# Up to this many touched contacts a run stays incremental whatever their share: it is cheap at
# any size of database (and a small database's full run is cheap too).
INCREMENTAL_ALWAYS_UP_TO = 1_000


@dataclass(frozen=True)
class MetricsSummary:
    as_of: datetime
    contacts: int
    activities_counted: int
    future_activities_ignored: int
    duration_ms: int
    full: bool
    scoring_version: int | None
    steps_ms: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        scope = "all contacts" if self.full else "touched contacts"
        return (
            f"Metrics as of {self.as_of.isoformat()} ({scope}): {self.contacts} contacts, "
            f"{self.activities_counted} activities counted, {self.future_activities_ignored} future activities "
            f"ignored, {self.duration_ms} ms (scoring model version {self.scoring_version})"
        )


def _params(model: ScoringModel, as_of: datetime) -> dict:
    adapt = connection.ops.adapt_datetimefield_value

    def before(days: int) -> object:
        return adapt(as_of - timedelta(days=days))

    return {
        "as_of": adapt(as_of),
        "as_of_epoch": as_of.timestamp(),
        "as_of_date": connection.ops.adapt_datefield_value(timezone.localdate(as_of)),
        "half_life": float(model.half_life_days),
        "past_at": before(PAST_DAYS),
        "lapse_since": before(LAPSE_DAYS),
        "email_since": before(model.email_window_days),
        "web_since": before(model.web_window_days),
        "recent_since": before(VELOCITY_DAYS),
        "previous_since": before(2 * VELOCITY_DAYS),
        "frequency_since": before(model.rfv_frequency_window_days),
        "strong_since": before(model.strong_intent_days),
        "email_highly": model.email_highly_threshold,
        "email_moderately": model.email_moderately_threshold,
        "web_active": model.web_active_threshold,
        "web_engaged": model.web_engaged_threshold,
        "velocity_min_recent": model.velocity_min_recent,
        "velocity_min_ratio": float(model.velocity_min_ratio),
        "top_percent": model.highly_engaged_top_percent,
        "bottom_percent": model.disengaged_bottom_percent,
    }


def _cheaper_in_full(touched: int) -> bool:
    """Whether recomputing everyone costs less than recomputing `touched` contacts.

    An incremental run reads every stored row once to rank the touched ones and aggregates their
    activities through the contact index; past a share of the contacts (measured with
    bench_metrics --touched, METRICS_INCREMENTAL_MAX_PERCENT) one full run is cheaper, and it ranks
    everyone afresh besides."""
    if touched <= INCREMENTAL_ALWAYS_UP_TO:
        return False
    return 100 * touched > settings.METRICS_INCREMENTAL_MAX_PERCENT * Contact.objects.count()


def measure_ctes(
    *, as_of: datetime, contact_ids: list[int] | None = None, extra: dict[str, str] | None = None
) -> tuple[str, dict]:
    """CTE definitions (no WITH) ending in `measures`: the raw measures of every contact (or of
    `contact_ids`) as of `as_of`, exactly as `compute_metrics --as-of` computes them, and their
    parameters; nothing is stored. Point-in-time features (predictions/features.py) read them,
    with their activity counts per kind and window as `extra` aggregates of the same pass over
    the activities (contacts.metrics.sql.base_ctes)."""
    model = ScoringModel.objects.get_active()
    params = _params(model, as_of)
    if contact_ids is not None:
        params["ids"] = json.dumps(sorted({int(i) for i in contact_ids}))
    subset = contact_ids is not None
    return base_ctes(Dialect(connection.vendor), model, params, subset=subset, extra=extra), params


def compute_metrics(
    *, as_of: datetime | None = None, contact_ids: list[int] | None = None, announce: bool = True
) -> MetricsSummary:
    """Recompute metrics as of `as_of` (default now) for all contacts or `contact_ids` (as a full run
    when that is cheaper, see `_cheaper_in_full`).

    Idempotent: every contact in scope gets exactly one row, replaced. Activities dated
    after `as_of` are not counted; how many there were is reported. Listeners of
    contacts.changes.metrics_changed hear about it after commit, unless `announce` is False: the
    caller replaces these rows again before it commits (the demo's replay of past points,
    contacts/demo_as_of.py, recomputes them as of each point and then as of now).
    """
    started = time.monotonic()
    as_of = as_of or timezone.now()
    model = ScoringModel.objects.get_active()
    version = model.current_version
    dialect = Dialect(connection.vendor)
    params = _params(model, as_of)
    ids = sorted({int(i) for i in contact_ids or []})
    full = contact_ids is None or _cheaper_in_full(len(ids))
    steps = Steps()
    # A full run on PostgreSQL that owns its transaction computes half of the contacts in each of
    # two more sessions, at once (contacts/metrics/parallel.py); inside a caller's transaction, one
    # statement does it all (those sessions could not see the caller's rows).
    in_parts = full and dialect.postgres and not connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cursor:
            if dialect.postgres:
                # One metrics run at a time: a full run replaces the whole table, so an
                # incremental run committed meanwhile would be lost with the old table, and a
                # second full run would collide on the fresh table's name. (SQLite's write
                # transactions are serialised already.)
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [METRICS_LOCK_KEY])
                # The ranking sorts and per-contact hash aggregates of a full run spill to disk
                # at the default 4MB; this transaction (and each part's session) gets more. At 1M
                # contacts the per-contact aggregate of activities, with a sum per topic and
                # product, needs ~690MB of hash table in one statement (~350MB per half), which
                # fits in work_mem * hash_mem_multiplier (2) here: spilled, it took much longer.
                cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
                for setting in parallel.SESSION_SETTINGS:
                    cursor.execute(f"SET LOCAL {setting}")
                if not full:
                    # The incremental statements read few rows, but their estimates (the joins of
                    # bucket counts) look vast to the planner, which then spends seconds on JIT.
                    cursor.execute("SET LOCAL jit = off")
        # Read before any measure: every activity above it was written after this run began (the
        # watermark scoring checks before it reads the stored measures, predictions.stored_measures).
        last_activity_id = Activity.objects.aggregate(top=Max("id"))["top"] or 0
        if in_parts:
            with steps.timed("measure in parts"):
                parallel.stage_parts(model, params, work_mem=WORK_MEM)
            select = ranked_select(dialect, parallel.staged_source())
            with connection.cursor() as cursor:
                # Staged rows meet their counts in a hash join; the planner's merge join sorted
                # the 1M wide staged rows on disk first (1M/10M: ranking 12.9 s -> 10.3 s).
                cursor.execute("SET LOCAL enable_mergejoin = off")
            replace_rows(connection, table=TABLE, columns=COLUMNS, select=select, params=params, steps=steps)
            with connection.cursor() as cursor:
                cursor.execute(parallel.drop_stages_sql())
        elif full:
            vocabulary = pivot.NONE
            if dialect.postgres:
                # The vocabulary and the measures are read in two statements: a topic first
                # written between them is left out until the next run.
                with steps.timed("vocabulary"), connection.cursor() as cursor:
                    vocabulary = pivot.discover(cursor, product_kinds=product_kinds(params), params=params)
            select = full_select(dialect, model, params, vocabulary)
            replace_rows(connection, table=TABLE, columns=COLUMNS, select=select, params=params, steps=steps)
        elif ids:
            params["ids"] = json.dumps(ids)
            with connection.cursor() as cursor:
                for name, statement in zip(["measure", "rank"], subset_statements(dialect, model, params), strict=True):
                    with steps.timed(name):
                        cursor.execute(statement, params)
        scope = ContactMetrics.objects.all() if full else ContactMetrics.objects.filter(contact_id__in=ids)
        activities = Activity.objects.all() if full else Activity.objects.filter(contact_id__in=ids)
        with steps.timed("summary"):
            contacts = Contact.objects.count() if full else Contact.objects.filter(id__in=ids).count()
            counted = scope.aggregate(total=Sum("activity_count"))["total"] or 0
            future = activities.filter(occurred_at__gt=as_of).count()
        summary = MetricsSummary(
            as_of=as_of,
            contacts=contacts,
            activities_counted=counted,
            future_activities_ignored=future,
            duration_ms=round((time.monotonic() - started) * 1000),
            full=full,
            scoring_version=version.number if version else None,
            steps_ms=steps.ms,
        )
        MetricsRun.objects.create(
            as_of=as_of,
            duration_ms=summary.duration_ms,
            full=full,
            contacts=summary.contacts,
            activities_counted=summary.activities_counted,
            future_activities_ignored=summary.future_activities_ignored,
            scoring_version=version,
            last_activity_id=last_activity_id,
        )
        if announce:
            metrics_changed(None if full else ids)
    return summary
