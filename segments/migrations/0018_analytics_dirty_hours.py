"""AnalyticsDirtyHour: the hours whose analytics source rows changed, kept by triggers; the id
watermarks of AnalyticsState go.

The watermarks missed a row whose transaction committed after a run had read the newest id (its id
was below the next run's lower bound), and any update or delete: a deal won with a past close time,
moved away from won, or deleted. The triggers record, in the writing transaction, the UTC hour of
every time a row of the four source tables had or has: activities' occurred_at, lifecycle changes'
changed_at, deals' created_at and closed_at, membership changes' changed_at (with their segment),
for inserts (new values), deletes (old values) and updates (both). segments/analytics/updates.py
reads and deletes them.

PostgreSQL: statement-level triggers with transition tables, one row per distinct hour (and
segment) per statement; on the activity table they sit on the partitioned parent, as the tally's
do, so they fire for every statement through it. No unique constraint: a waiting hour that a
concurrent writer would have to wait on, or skip while an update reads it, would serialise ingest
or lose a change, so rows repeat across statements and the update reads them distinct. SQLite:
row-level triggers; writes are serialised there, so a row skips an hour already waiting and not
yet claimed (the update's claim cannot run until the writer commits).

TRUNCATE records nothing (it is not a write path of the product; tests' flushes use it). Rows
moved between activity partitions unchanged (contacts/partitions.py) and months dropped by
retention fire nothing, as intended: their days are final.

Hours written since the last run under the watermarks are carried over, after the triggers are on
(creating them waits for in-flight writers and holds new ones until this commits).
"""

from datetime import UTC

from django.db import migrations, models

DIRTY = "segments_analyticsdirtyhour"
# source: (table, time columns, segment column)
SOURCES = {
    "activity": ("contacts_activity", ["occurred_at"], None),
    "lifecycle": ("contacts_lifecyclechange", ["changed_at"], None),
    "deal": ("contacts_deal", ["created_at", "closed_at"], None),
    "membership": ("segments_membershipchange", ["changed_at"], "segment_id"),
}
EVENTS = {  # event: (transition tables it reads, PostgreSQL's REFERENCING clause)
    "insert": (["new_rows"], "REFERENCING NEW TABLE AS new_rows"),
    "delete": (["old_rows"], "REFERENCING OLD TABLE AS old_rows"),
    "update": (["old_rows", "new_rows"], "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
}


def _name(source: str, event: str) -> str:
    return f"{DIRTY}_{source}_{event}"


def pg_body(source: str, event: str) -> str:
    """One grouped insert of the distinct hours (and segments) of the statement's rows."""
    _, columns, segment = SOURCES[source]
    times = " UNION ALL ".join(
        f"SELECT {column} AS at, {segment or 'NULL::bigint'} AS segment_id FROM {rows}"
        for rows in EVENTS[event][0]
        for column in columns
    )
    return f"""INSERT INTO {DIRTY} (source, hour, segment_id, claimed)
        SELECT DISTINCT '{source}', date_trunc('hour', t.at, 'UTC'), t.segment_id, false FROM ({times}) AS t
        WHERE t.at IS NOT NULL;"""


def sqlite_body(source: str, event: str) -> str:
    """An insert per time of the row, unless that hour (and segment) is already waiting."""
    _, columns, segment = SOURCES[source]
    statements = []
    for side in ("OLD", "NEW") if event == "update" else ("NEW",) if event == "insert" else ("OLD",):
        for column in columns:
            hour = f"strftime('%Y-%m-%d %H:00:00', {side}.{column})"
            seg = f"{side}.{segment}" if segment else "NULL"
            statements.append(
                f"""INSERT INTO {DIRTY} (source, hour, segment_id, claimed)
                SELECT '{source}', {hour}, {seg}, 0 WHERE {side}.{column} IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM {DIRTY} WHERE NOT claimed AND source = '{source}' AND hour = {hour}
                    AND segment_id IS {seg});"""
            )
    return "\n".join(statements)


def install_triggers(apps, schema_editor) -> None:
    execute = schema_editor.execute
    postgresql = schema_editor.connection.vendor == "postgresql"
    for source, (table, _, _) in SOURCES.items():
        for event, (_, referencing) in EVENTS.items():
            name = _name(source, event)
            if postgresql:
                execute(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"{pg_body(source, event)} RETURN NULL; END $$"
                )
                execute(
                    f"CREATE TRIGGER {name} AFTER {event.upper()} ON {table} {referencing} FOR EACH STATEMENT "
                    f"EXECUTE FUNCTION {name}()"
                )
            else:
                execute(f"CREATE TRIGGER {name} AFTER {event.upper()} ON {table} BEGIN {sqlite_body(source, event)} END")


def drop_triggers(apps, schema_editor) -> None:
    postgresql = schema_editor.connection.vendor == "postgresql"
    for source, (table, _, _) in SOURCES.items():
        for event in EVENTS:
            name = _name(source, event)
            if postgresql:
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                schema_editor.execute(f"DROP FUNCTION IF EXISTS {name}()")
            else:
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")


def carry_over(apps, schema_editor) -> None:
    """The hours of rows above the watermarks (and of deals closed since the last check) that the
    next update would have read."""
    state = apps.get_model("segments", "AnalyticsState").objects.order_by("pk").first()
    if state is None or state.computed_through is None:
        return  # the first update backfills a year
    Dirty = apps.get_model("segments", "AnalyticsDirtyHour")
    marks = {
        "activity": ("contacts", "Activity", state.activity_id),
        "lifecycle": ("contacts", "LifecycleChange", state.lifecycle_id),
        "deal": ("contacts", "Deal", state.deal_id),
        "membership": ("segments", "MembershipChange", state.change_id),
    }
    hours: set[tuple] = set()
    for source, (app, model, mark) in marks.items():
        _, columns, segment = SOURCES[source]
        rows = apps.get_model(app, model).objects.filter(pk__gt=mark)
        if source == "deal" and state.deals_checked_at:
            rows = apps.get_model(app, model).objects.filter(
                models.Q(pk__gt=mark) | models.Q(closed_at__gte=state.deals_checked_at)
            )
        for values in rows.values_list(*columns, segment or "pk").iterator():
            for at in values[: len(columns)]:
                if at is not None:
                    hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
                    hours.add((source, hour, values[-1] if segment else None))
    Dirty.objects.bulk_create(
        [Dirty(source=source, hour=hour, segment_id=segment) for source, hour, segment in sorted(hours, key=str)],
        batch_size=2000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0026_metricsrun_last_activity_id"),
        ("segments", "0017_membership_redundant_fk_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="AnalyticsDirtyHour",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "source",
                    models.CharField(
                        choices=[
                            ("activity", "Activity"),
                            ("lifecycle", "Lifecycle change"),
                            ("deal", "Deal"),
                            ("membership", "Membership change"),
                        ],
                        max_length=10,
                    ),
                ),
                ("hour", models.DateTimeField(help_text="The changed time, truncated to the hour in UTC")),
                ("segment_id", models.BigIntegerField(blank=True, null=True)),
                ("claimed", models.BooleanField(default=False, help_text="Being read by an update")),
            ],
            options={
                "indexes": [
                    models.Index(
                        condition=models.Q(("claimed", False)),
                        fields=["source", "hour", "segment_id"],
                        name="analytics_dirty_waiting",
                    )
                ],
            },
        ),
        migrations.RunPython(install_triggers, drop_triggers),
        migrations.RunPython(carry_over, migrations.RunPython.noop),
        migrations.RemoveField(model_name="analyticsstate", name="activity_id"),
        migrations.RemoveField(model_name="analyticsstate", name="change_id"),
        migrations.RemoveField(model_name="analyticsstate", name="deal_id"),
        migrations.RemoveField(model_name="analyticsstate", name="deals_checked_at"),
        migrations.RemoveField(model_name="analyticsstate", name="lifecycle_id"),
    ]
