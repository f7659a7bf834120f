"""The demo's contacts as they were at a past point, for replaying a year of segment history.

Inside one transaction, `rewound(now=...)` keeps today's values of the fields that change over a
contact's life in a temporary table and yields `rewind(at)`, which sets every contact's fields to
their values at `at` and recomputes ContactMetrics as of `at`; on leaving, today's values come
back and the metrics are recomputed as of `now`. Segment rules compiled in between read the past
through the ordinary field registry. Nobody outside the transaction ever sees a rewound row, and
an error rolls the whole replay back.

What a contact was at `at`:
- lifecycle stage and `lifecycle_changed_at` from the stage history (the last change at or before
  `at`; before the first change, the stage that change left; without any history, as stored);
- customer_since and product_adoption as stored once it was a customer by `at`'s date, none
  before; renewal_date the yearly renewal that was next then (today's, or the one a year before it
  while that was still ahead: a history of up to a year); lifetime_value the won deals closed by
  `at`, for a customer then;
- lead_score by the demo's own formula (contacts/demo_data.py `score`): today's score less
  SCORE_PER_STEP for each funnel step taken since `at` and a point for each ACTIVITIES_PER_POINT
  activities dated after it (the noise drawn at seeding stays), kept within 0..100; a score that
  seeding capped at 100 comes back lower than it was;
- the behavioural metrics as `compute_metrics --as-of` computes them (activities after `at` unseen),
  for the contacts created by then (the others have no metrics row, as if never computed).
Fields without a history (e-mail status, reachability, company, demographics, estimated deal size)
are read as they are today.

Three statements per point besides the metrics run, whatever the number of contacts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from django.db import connection
from django.utils import timezone

from contacts.demo_data import ACTIVITIES_PER_POINT, FUNNEL, SCORE_PER_STEP
from contacts.metrics.compute import compute_metrics
from contacts.metrics.dialect import Dialect
from contacts.models import Activity, Contact, ContactMetrics, Deal, DealStage, LifecycleChange

TODAY = "demo_today"
# The fields `rewind` changes, kept in TODAY as they are now.
KEPT = ["lifecycle_stage", "lifecycle_changed_at", "lead_score", "lifetime_value", "customer_since", "renewal_date",
        "product_adoption"]  # fmt: skip


def _step(column: str) -> str:
    """The funnel step of the stage in `column` (0 off the funnel), as contacts/demo_data.funnel_step."""
    branches = " ".join(f"WHEN '{stage}' THEN {step}" for step, stage in enumerate(FUNNEL))
    return f"(CASE {column} {branches} ELSE 0 END)"


def _statements() -> tuple[list[str], list[str], list[str]]:
    """(keep, rewind, restore): SQL that fills TODAY, sets the contacts as of %(at)s, puts them back."""
    d = Dialect(connection.vendor)
    contact, change = Contact._meta.db_table, LifecycleChange._meta.db_table
    activity, deal = Activity._meta.db_table, Deal._meta.db_table
    kept = ", ".join(KEPT)
    keep = [
        f"""CREATE TEMPORARY TABLE {TODAY} AS
        SELECT id, {kept}, (SELECT COUNT(*) FROM {activity} a WHERE a.contact_id = c.id) AS activities
        FROM {contact} c""",
        f"CREATE UNIQUE INDEX {TODAY}_id ON {TODAY} (id)",
    ]

    def history(column: str, *, before: bool) -> str:
        order, compare = ("DESC", "<=") if before else ("ASC", ">")
        return f"""(SELECT h.{column} FROM {change} h WHERE h.contact_id = {contact}.id
                AND h.changed_at {compare} %(at)s ORDER BY h.changed_at {order}, h.id {order} LIMIT 1)"""

    at_date = d.as_date("%(at_date)s")
    customer = f"t.customer_since <= {at_date}"
    # The renewal then: a yearly renewal a year before today's, if it was still ahead at the point.
    if d.postgres:
        year_before = "CAST(t.renewal_date - INTERVAL '1 year' AS DATE)"
    else:
        year_before = "date(t.renewal_date, '-1 year')"
    stages = f"""UPDATE {contact} SET
        lifecycle_stage = COALESCE({history("to_stage", before=True)}, {history("from_stage", before=False)},
                                   t.lifecycle_stage),
        lifecycle_changed_at = COALESCE({history("changed_at", before=True)}, t.lifecycle_changed_at),
        customer_since = CASE WHEN {customer} THEN t.customer_since END,
        renewal_date = CASE WHEN NOT ({customer}) THEN NULL
                            WHEN {year_before} >= {at_date} AND {year_before} > t.customer_since THEN {year_before}
                            ELSE t.renewal_date END,
        product_adoption = CASE WHEN {customer} THEN t.product_adoption END,
        lifetime_value = CASE WHEN {customer} THEN (
            SELECT SUM(w.amount) FROM {deal} w
            WHERE w.contact_id = {contact}.id AND w.stage = '{DealStage.WON.value}' AND w.closed_at <= %(at)s) END
        FROM {TODAY} t WHERE t.id = {contact}.id"""
    # Reads the stage the statement above wrote (each statement sees the rows as they were before it).
    since = f"(SELECT COUNT(*) FROM {activity} a WHERE a.contact_id = {contact}.id AND a.occurred_at <= %(at)s)"
    score = (
        f"t.lead_score - {SCORE_PER_STEP} * ({_step('t.lifecycle_stage')} - {_step(f'{contact}.lifecycle_stage')})"
        f" - (t.activities / {ACTIVITIES_PER_POINT} - {since} / {ACTIVITIES_PER_POINT})"
    )
    scores = f"""UPDATE {contact} SET lead_score = {d.greatest("0", d.least("100", score))}
        FROM {TODAY} t WHERE t.id = {contact}.id"""
    back = ", ".join(f"{name} = t.{name}" for name in KEPT)
    restore = [f"UPDATE {contact} SET {back} FROM {TODAY} t WHERE t.id = {contact}.id", f"DROP TABLE {TODAY}"]
    return keep, [stages, scores], restore


@contextmanager
def rewound(*, now: datetime) -> Iterator[Callable[[datetime], None]]:
    """Yield `rewind(at)` (contacts and metrics as of `at`); on leaving, contacts as they were and
    metrics as of `now`. Must run inside a transaction, which keeps the rewound rows to itself."""
    if not connection.in_atomic_block:
        raise RuntimeError("rewound() rewrites every contact: run it inside transaction.atomic()")
    keep, rewind_sql, restore = _statements()
    with connection.cursor() as cursor:
        for statement in keep:
            cursor.execute(statement)

    def rewind(at: datetime) -> None:
        params = {
            "at": connection.ops.adapt_datetimefield_value(at),
            "at_date": connection.ops.adapt_datefield_value(timezone.localdate(at)),
        }
        with connection.cursor() as cursor:
            for statement in rewind_sql:
                cursor.execute(statement, params)
        compute_metrics(as_of=at, announce=False)
        # A full run gives every contact a row; one created after `at` did not exist yet, and its
        # zeros would count in the top and bottom percentages that segment rules measure.
        ContactMetrics.objects.filter(contact__created_at__gt=at).delete()

    yield rewind
    with connection.cursor() as cursor:
        for statement in restore:
            cursor.execute(statement)
    compute_metrics(as_of=now)
