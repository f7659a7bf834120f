"""PostgreSQL: the activity table partitioned by month (contacts/partitions.py says how and why).

The table is rebuilt under an exclusive lock: a partitioned copy with the same columns, every row
copied (the row count is checked before the old table goes), then the old table's foreign keys and
indexes made again on the copy under their names, the identity sequence moved past the highest id,
the external-id table filled and the triggers (tally, external ids) put on. The tally table is not
touched: the rows it counts are the same. Backwards, the same the other way round. SQLite: nothing.

Django's model keeps `id` as primary key and `external_id` as unique (both true on SQLite and, by
the sequence and the key table, on PostgreSQL); in SQL the primary key is (id, occurred_at) and
external_id has no UNIQUE constraint of its own, so a later migration that changes either column
must say what it does on the partitioned table in SQL.
"""

from datetime import UTC, datetime

from django.db import migrations

from contacts.partitions import ACTIVITY, DEFAULT_PARTITION, KEYS, MONTHS_AHEAD, add_months, month_start, partition_name

TALLY = "contacts_activitytally"
TALLY_TRIGGERS = {
    "add": "AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT",
    "remove": "AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT",
    "move": "AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT",
    "clear": "AFTER TRUNCATE ON {table} FOR EACH STATEMENT",
}
# Months before this one that get a partition of their own; older rows stay in DEFAULT.
MONTHS_BACK = 120

# The external-id table, kept by statement triggers. {rows}: the rows to claim ids for.
CLAIM = f"""
    INSERT INTO {KEYS} (external_id, activity_id, occurred_at)
    SELECT external_id, id, occurred_at FROM {{rows}} AS claim WHERE external_id IS NOT NULL
    ON CONFLICT (external_id) DO NOTHING;
    IF EXISTS (SELECT FROM {{rows}} AS claim JOIN {KEYS} AS stored ON stored.external_id = claim.external_id
               WHERE stored.activity_id <> claim.id) THEN
        RAISE unique_violation USING
            MESSAGE = 'duplicate key value violates unique constraint "{KEYS}_pkey"',
            DETAIL = 'An activity with this external_id is already stored.',
            CONSTRAINT = '{KEYS}_pkey', TABLE = '{ACTIVITY}', COLUMN = 'external_id';
    END IF;
"""
RELEASE = f"""
    DELETE FROM {KEYS} AS stored USING {{rows}} AS gone
    WHERE stored.external_id = gone.external_id AND stored.activity_id = gone.id;
"""
# An UPDATE re-claims only the rows whose external id or time changed.
CHANGED = """(SELECT {side}.* FROM old_rows JOIN new_rows ON new_rows.id = old_rows.id
    WHERE (old_rows.external_id, old_rows.occurred_at) IS DISTINCT FROM (new_rows.external_id, new_rows.occurred_at))"""
KEY_FUNCTIONS = {
    "claim": (CLAIM.format(rows="new_rows"), TALLY_TRIGGERS["add"]),
    "release": (RELEASE.format(rows="old_rows"), TALLY_TRIGGERS["remove"]),
    "move": (
        RELEASE.format(rows=CHANGED.format(side="old_rows")) + CLAIM.format(rows=CHANGED.format(side="new_rows")),
        TALLY_TRIGGERS["move"],
    ),
    "clear": (f"DELETE FROM {KEYS};", TALLY_TRIGGERS["clear"]),
}


def _definitions(execute_fetch, table: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The table's plain (non-unique) index definitions, and its foreign keys and checks."""
    indexes = [
        definition.replace(" ON ONLY ", " ON ")
        for (definition,) in execute_fetch(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass AND NOT indisunique",
            [table],
        )
    ]
    constraints = execute_fetch(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass"
        " AND contype IN ('f', 'c') ORDER BY conname",
        [table],
    )
    return indexes, constraints


def _rebuild(schema_editor, *, partition: bool) -> None:
    connection = schema_editor.connection
    execute = schema_editor.execute

    def fetch(sql: str, params=None) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    execute(f"LOCK TABLE {ACTIVITY} IN ACCESS EXCLUSIVE MODE")
    indexes, constraints = _definitions(fetch, ACTIVITY)
    ((rows,),) = fetch(f"SELECT count(*) FROM {ACTIVITY}")
    copy = f"{ACTIVITY}_rebuilt"
    execute(
        f"CREATE TABLE {copy} (LIKE {ACTIVITY} INCLUDING DEFAULTS INCLUDING IDENTITY)"
        + (" PARTITION BY RANGE (occurred_at)" if partition else "")
    )
    if partition:
        this_month = month_start(datetime.now(UTC).date())
        ((oldest,),) = fetch(f"SELECT min(occurred_at) FROM {ACTIVITY}")
        first = max(month_start(oldest.astimezone(UTC).date()), add_months(this_month, -MONTHS_BACK)) if oldest else this_month
        month = first
        while month <= add_months(this_month, MONTHS_AHEAD):
            start, end = month.isoformat(), add_months(month, 1).isoformat()
            execute(
                f"CREATE TABLE {partition_name(month)} PARTITION OF {copy}"
                f" FOR VALUES FROM ('{start} 00:00:00+00') TO ('{end} 00:00:00+00')"
            )
            month = add_months(month, 1)
        execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {copy} DEFAULT")
    execute(f"INSERT INTO {copy} SELECT * FROM {ACTIVITY}")
    ((copied,),) = fetch(f"SELECT count(*) FROM {copy}")
    if copied != rows:
        raise RuntimeError(f"{ACTIVITY}: {rows} rows, but {copied} copied; nothing was changed")
    execute(f"DROP TABLE {ACTIVITY}")  # with its triggers; the tally's functions stay
    if not partition:
        execute(f"DROP TABLE {KEYS}")
        for name in KEY_FUNCTIONS:
            execute(f"DROP FUNCTION {KEYS}_{name}()")
    execute(f"ALTER TABLE {copy} RENAME TO {ACTIVITY}")
    execute(f"ALTER TABLE {ACTIVITY} ADD CONSTRAINT {ACTIVITY}_pkey PRIMARY KEY ({'id, occurred_at' if partition else 'id'})")
    if not partition:
        execute(f"ALTER TABLE {ACTIVITY} ADD CONSTRAINT {ACTIVITY}_external_id_key UNIQUE (external_id)")
    for name, definition in constraints:
        execute(f"ALTER TABLE {ACTIVITY} ADD CONSTRAINT {name} {definition}")
    for definition in indexes:
        execute(definition)
    execute(
        f"SELECT setval(pg_get_serial_sequence('{ACTIVITY}', 'id'), coalesce(max(id), 1), max(id) IS NOT NULL)"
        f" FROM {ACTIVITY}"
    )
    for name, when in TALLY_TRIGGERS.items():
        function = f"{TALLY}_{name}"
        execute(f"CREATE TRIGGER {function} {when.format(table=ACTIVITY)} EXECUTE FUNCTION {function}()")
    if partition:
        execute(
            f"CREATE TABLE {KEYS} (external_id varchar(200) PRIMARY KEY, activity_id bigint NOT NULL,"
            " occurred_at timestamptz NOT NULL)"
        )
        execute(
            f"INSERT INTO {KEYS} (external_id, activity_id, occurred_at)"
            f" SELECT external_id, id, occurred_at FROM {ACTIVITY} WHERE external_id IS NOT NULL"
        )
        for name, (body, when) in KEY_FUNCTIONS.items():
            function = f"{KEYS}_{name}"
            execute(f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$")
            execute(f"CREATE TRIGGER {function} {when.format(table=ACTIVITY)} EXECUTE FUNCTION {function}()")
        execute(f"ANALYZE {KEYS}")
    execute(f"ANALYZE {ACTIVITY}")


def partition_activity(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        _rebuild(schema_editor, partition=True)


def unpartition_activity(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        _rebuild(schema_editor, partition=False)


class Migration(migrations.Migration):
    dependencies = [("contacts", "0018_catch_up")]

    operations = [migrations.RunPython(partition_activity, unpartition_activity)]
