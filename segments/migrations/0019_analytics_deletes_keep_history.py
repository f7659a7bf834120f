"""Deleting never rewrites analytics history: the triggers of 0018 no longer record deletes.

Issue 22: "A contact deleted after its outcome keeps its contribution to past rollups." Erasing a
contact deletes its activities, lifecycle changes and membership changes and unsets its deals'
contact; 0018 recorded all of that, so the next update recomputed the periods they counted in
without them. Now:
- no DELETE trigger on the four source tables: a deleted row leaves the stored periods as they are
  (a period recomputed later for another change is computed from what is stored then);
- a deal whose contact is unset with nothing else changed (what ON DELETE SET NULL does when its
  contact is deleted) is not recorded; a deal updated in any other way still is (old and new
  times), its contact moved to another one included.
"""

import importlib

from django.db import migrations

dirty_hours = importlib.import_module("segments.migrations.0018_analytics_dirty_hours")
DIRTY, SOURCES, EVENTS = dirty_hours.DIRTY, dirty_hours.SOURCES, dirty_hours.EVENTS
DEAL_UPDATE = f"{DIRTY}_deal_update"
DETACHED_PG = """o.contact_id IS NOT NULL AND n.contact_id IS NULL AND (n.stage, n.amount, n.created_at, n.closed_at)
    IS NOT DISTINCT FROM (o.stage, o.amount, o.created_at, o.closed_at)"""
DETACHED_SQLITE = """OLD.contact_id IS NOT NULL AND NEW.contact_id IS NULL AND NEW.stage IS OLD.stage
    AND NEW.amount IS OLD.amount AND NEW.created_at IS OLD.created_at AND NEW.closed_at IS OLD.closed_at"""


def _pg_deal_update_body() -> str:
    """0018's body for a deal update, less the deals only detached from their contact."""
    times = " UNION ALL ".join(
        f"SELECT {side}.{column} AS at FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE NOT ({DETACHED_PG})"
        for side in ("o", "n")
        for column in SOURCES["deal"][1]
    )
    return f"""INSERT INTO {DIRTY} (source, hour, segment_id, claimed)
        SELECT DISTINCT 'deal', date_trunc('hour', t.at, 'UTC'), NULL::bigint, false FROM ({times}) AS t
        WHERE t.at IS NOT NULL;"""


def _set_deal_update(schema_editor, *, detached_too: bool) -> None:
    execute = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        body = dirty_hours.pg_body("deal", "update") if detached_too else _pg_deal_update_body()
        execute(
            f"CREATE OR REPLACE FUNCTION {DEAL_UPDATE}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {body} RETURN NULL; END $$"
        )
        return
    when = "" if detached_too else f" WHEN NOT ({DETACHED_SQLITE})"
    execute(f"DROP TRIGGER IF EXISTS {DEAL_UPDATE}")
    execute(
        f"CREATE TRIGGER {DEAL_UPDATE} AFTER UPDATE ON contacts_deal{when} "
        f"BEGIN {dirty_hours.sqlite_body('deal', 'update')} END"
    )


def forwards(apps, schema_editor) -> None:
    postgresql = schema_editor.connection.vendor == "postgresql"
    for source, (table, _, _) in SOURCES.items():
        name = f"{DIRTY}_{source}_delete"
        if postgresql:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            schema_editor.execute(f"DROP FUNCTION IF EXISTS {name}()")
        else:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
    _set_deal_update(schema_editor, detached_too=False)


def backwards(apps, schema_editor) -> None:
    postgresql = schema_editor.connection.vendor == "postgresql"
    referencing = EVENTS["delete"][1]
    for source, (table, _, _) in SOURCES.items():
        name = f"{DIRTY}_{source}_delete"
        if postgresql:
            body = dirty_hours.pg_body(source, "delete")
            schema_editor.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
            )
            schema_editor.execute(
                f"CREATE TRIGGER {name} AFTER DELETE ON {table} {referencing} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
        else:
            body = dirty_hours.sqlite_body(source, "delete")
            schema_editor.execute(f"CREATE TRIGGER {name} AFTER DELETE ON {table} BEGIN {body} END")
    _set_deal_update(schema_editor, detached_too=True)


class Migration(migrations.Migration):
    dependencies = [("segments", "0018_analytics_dirty_hours")]

    operations = [migrations.RunPython(forwards, backwards)]
