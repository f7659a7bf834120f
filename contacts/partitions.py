"""Monthly partitions of the activity table (PostgreSQL; SQLite keeps one plain table).

Migration 0019 turns `contacts_activity` into a table partitioned by RANGE (occurred_at), one
partition per calendar month in UTC (`contacts_activity_p202612` holds December 2026), plus a
DEFAULT partition for rows outside every month made so far (far past, far future).

- Primary key: PostgreSQL wants the partition key in every unique constraint, so the table's
  PRIMARY KEY is (id, occurred_at) in SQL. Django keeps `id` as the model's primary key: ids come
  from one identity sequence, so `id` alone stays unique, and `WHERE id = ...` uses the PK index of
  each partition. (A CompositePrimaryKey model would turn every `activity.pk` into a tuple and the
  admin does not support it; nothing references activities by foreign key.)
- Idempotent ingest: `external_id` cannot be UNIQUE on its own across partitions, so a small
  table, `contacts_activity_external_id` (external_id PRIMARY KEY, activity_id, occurred_at), holds
  every stored external id. Statement triggers on the activity table keep it in step on every write
  path (ORM, bulk_create, COPY, raw SQL): an insert claims its ids, and an id already claimed by
  another activity raises unique_violation, as the UNIQUE column did. Bulk ingest claims the ids
  first, in the same statement (`claim_insert_sql`), and inserts only the rows it claimed: a repeated
  delivery, even a concurrent one, is skipped, as ON CONFLICT DO NOTHING did. (A UNIQUE on
  (external_id, occurred_at) would let a redelivery with a corrected time in twice.)
- The tally triggers (migration 0009) are statement triggers on the parent table, as before; a
  statement naming a partition directly bypasses them, so nothing here writes rows through a
  partition except to move them between partitions unchanged.
- `ensure_partitions` (a daily schedule) makes the months ahead; a row for a month without a
  partition lands in DEFAULT, and making that month's partition moves it there. It also makes the
  partitions of past months (back to MONTHS_BACK) whose rows DEFAULT holds: on a table that was
  empty when migrated (a fresh install), history loaded later (the demo, a backfill through the API)
  would otherwise stay in DEFAULT for good, read by every statement whatever its months and never
  dropped whole by retention. Bulk loads that know how far back they write (`seed_demo`, the bench
  data) make those months first (`since`), so their rows go straight to their months.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.db import connection, transaction

ACTIVITY = "contacts_activity"
KEYS = "contacts_activity_external_id"
DEFAULT_PARTITION = f"{ACTIVITY}_default"
# Months made ahead of the current one by the daily schedule (and by the migration).
MONTHS_AHEAD = 3
# Past months that get a partition of their own (as the migration gives them); older rows stay in DEFAULT.
MONTHS_BACK = 120
SCHEDULE_NAME = "contacts: make activity partitions ahead"


def partitioned() -> bool:
    """The activity table is partitioned (PostgreSQL after migration 0019)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = %s::regclass", [ACTIVITY])
        return cursor.fetchone()[0]


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"{ACTIVITY}_p{month:%Y%m}"


def _bound(month: date) -> str:
    return f"'{month.isoformat()} 00:00:00+00'"


def existing_months(cursor) -> set[date]:
    """The months that have a partition attached."""
    cursor.execute(
        """SELECT child.relname FROM pg_inherits JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE pg_inherits.inhparent = %s::regclass""",
        [ACTIVITY],
    )
    prefix = f"{ACTIVITY}_p"
    return {
        datetime.strptime(name.removeprefix(prefix), "%Y%m").date()
        for (name,) in cursor.fetchall()
        if name.startswith(prefix)
    }


def create_month(cursor, month: date) -> None:
    """Make `month`'s partition, moving into it the rows DEFAULT holds for that month.

    The rows move unchanged (same ids, contacts, kinds, times), so through the partitions directly:
    no tally or key trigger fires, and none needs to. DEFAULT is locked meanwhile."""
    name, start, end = partition_name(month), _bound(month), _bound(add_months(month, 1))
    in_month = f"occurred_at >= {start} AND occurred_at < {end}"
    cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(f"CREATE TABLE {name} (LIKE {ACTIVITY} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute(f"INSERT INTO {name} SELECT * FROM {DEFAULT_PARTITION} WHERE {in_month}")
    cursor.execute(f"DELETE FROM {DEFAULT_PARTITION} WHERE {in_month}")
    cursor.execute(f"ALTER TABLE {ACTIVITY} ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})")


def ensure_partitions(
    *, today: date | None = None, months_ahead: int = MONTHS_AHEAD, since: date | None = None
) -> list[str]:
    """Make the missing partitions, oldest first; returns their names. Nothing on SQLite or before
    migration 0019. The months made:

    - this month and the next `months_ahead`;
    - each past month whose rows DEFAULT holds, back to MONTHS_BACK months before this one (one
      pass over DEFAULT finds them; making a month moves its rows out of DEFAULT);
    - with `since`, every month from `since` on: a bulk load about to write that far back.
    """
    if not partitioned():
        return []
    this_month = month_start(today or datetime.now(UTC).date())
    oldest, last = add_months(this_month, -MONTHS_BACK), add_months(this_month, months_ahead)
    first = this_month if since is None else min(this_month, max(month_start(since), oldest))
    wanted = set(_months(first, last))
    made = []
    with connection.cursor() as cursor:
        wanted |= months_in_default(cursor, oldest, add_months(this_month, 1))
        for month in sorted(wanted - existing_months(cursor)):
            # A transaction per month: LOCK TABLE needs one, and the task runs in autocommit.
            with transaction.atomic():
                create_month(cursor, month)
            made.append(partition_name(month))
    return made


def months_in_default(cursor, first: date, end: date) -> set[date]:
    """The months from `first` up to `end` (exclusive) that DEFAULT holds rows for (a pass over it)."""
    cursor.execute(
        f"""SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date FROM {DEFAULT_PARTITION}
        WHERE occurred_at >= {_bound(first)} AND occurred_at < {_bound(end)}"""
    )
    return {month for (month,) in cursor.fetchall()}


def _months(first: date, last: date) -> list[date]:
    """Every month from `first` to `last`, both included."""
    months = []
    while first <= last:
        months.append(first)
        first = add_months(first, 1)
    return months


def claim_insert_sql(columns: list[str], source: str) -> str:
    """INSERT of the rows of table `source` (in `columns`) that claim a new external id or have
    none: each row gets its id from the activity sequence, the first row of each external id claims
    it, and rows whose id is already stored (or claimed by a concurrent insert, once that commits)
    are skipped. RETURNING contact_id of the rows inserted."""
    cols = ", ".join(columns)
    return f"""WITH source AS MATERIALIZED (
        SELECT nextval(pg_get_serial_sequence('{ACTIVITY}', 'id')) AS id, {cols} FROM {source}
    ), claimed AS (
        INSERT INTO {KEYS} (external_id, activity_id, occurred_at)
        SELECT DISTINCT ON (external_id) external_id, id, occurred_at FROM source
        WHERE external_id IS NOT NULL ORDER BY external_id, id
        ON CONFLICT (external_id) DO NOTHING RETURNING activity_id
    )
    INSERT INTO {ACTIVITY} (id, {cols}) SELECT id, {cols} FROM source
    WHERE external_id IS NULL OR id IN (SELECT activity_id FROM claimed)
    RETURNING contact_id"""
