"""ActivityTally: per contact and kind, how many activities there are, kept by triggers.

The triggers sit in the database so that every write path keeps the tally exact: the ORM,
bulk_create, COPY ingest, raw SQL, cascades and TRUNCATE. On PostgreSQL they are statement-level
with transition tables: one grouped upsert per statement, and rows locked in (contact, kind)
order by inserts and deletes alike, so that concurrent writers do not deadlock on them. On
SQLite they are row-level. A row whose count falls to 0 goes.

The tally is filled from the activities already stored, with writers held off meanwhile.
"""

import django.db.models.deletion
from django.db import migrations, models

ACTIVITY, TALLY = "contacts_activity", "contacts_activitytally"

# PostgreSQL: {rows} is a transition table, or the moved rows of an UPDATE's two.
PG_ADD = f"""
    INSERT INTO {TALLY} AS tally (contact_id, kind, n)
    SELECT contact_id, kind, count(*) FROM {{rows}} GROUP BY contact_id, kind ORDER BY contact_id, kind
    ON CONFLICT (contact_id, kind) DO UPDATE SET n = tally.n + excluded.n;
"""
PG_REMOVE = f"""
    PERFORM FROM {TALLY} AS tally JOIN (SELECT DISTINCT contact_id, kind FROM {{rows}}) AS gone
    ON tally.contact_id = gone.contact_id AND tally.kind = gone.kind
    ORDER BY tally.contact_id, tally.kind FOR UPDATE OF tally;
    UPDATE {TALLY} AS tally SET n = greatest(tally.n - gone.n, 0)
    FROM (SELECT contact_id, kind, count(*) AS n FROM {{rows}} GROUP BY contact_id, kind) AS gone
    WHERE tally.contact_id = gone.contact_id AND tally.kind = gone.kind;
    DELETE FROM {TALLY} AS tally USING (SELECT DISTINCT contact_id, kind FROM {{rows}}) AS gone
    WHERE tally.contact_id = gone.contact_id AND tally.kind = gone.kind AND tally.n = 0;
"""
# An UPDATE moves only the rows whose contact or kind changed.
PG_MOVED = """(SELECT {side}.contact_id, {side}.kind FROM old_rows JOIN new_rows ON new_rows.id = old_rows.id
    WHERE (old_rows.contact_id, old_rows.kind) IS DISTINCT FROM (new_rows.contact_id, new_rows.kind)) AS moved"""
PG_FUNCTIONS = {
    "add": PG_ADD.format(rows="new_rows"),
    "remove": PG_REMOVE.format(rows="old_rows"),
    "move": PG_ADD.format(rows=PG_MOVED.format(side="new_rows"))
    + PG_REMOVE.format(rows=PG_MOVED.format(side="old_rows")),
    # DELETE, not TRUNCATE: a TRUNCATE naming both tables (a flush) still holds the tally here.
    "clear": f"DELETE FROM {TALLY};",
}
PG_TRIGGERS = {
    "add": "AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT",
    "remove": "AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT",
    "move": "AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT",
    "clear": "AFTER TRUNCATE ON {table} FOR EACH STATEMENT",
}

# SQLite: row-level, on NEW / OLD.
SQLITE_ADD = f"""
    INSERT INTO {TALLY} (contact_id, kind, n) VALUES (NEW.contact_id, NEW.kind, 1)
    ON CONFLICT (contact_id, kind) DO UPDATE SET n = n + 1;
"""
SQLITE_REMOVE = f"""
    UPDATE {TALLY} SET n = max(n - 1, 0) WHERE contact_id = OLD.contact_id AND kind = OLD.kind;
    DELETE FROM {TALLY} WHERE contact_id = OLD.contact_id AND kind = OLD.kind AND n = 0;
"""
SQLITE_TRIGGERS = {
    "add": ("AFTER INSERT ON {table}", SQLITE_ADD),
    "remove": ("AFTER DELETE ON {table}", SQLITE_REMOVE),
    "move": ("AFTER UPDATE OF contact_id, kind ON {table}", SQLITE_ADD + SQLITE_REMOVE),
}

FILL = f"INSERT INTO {TALLY} (contact_id, kind, n) SELECT contact_id, kind, count(*) FROM {ACTIVITY} GROUP BY 1, 2"


def install_triggers(apps, schema_editor) -> None:
    execute = schema_editor.execute
    postgresql = schema_editor.connection.vendor == "postgresql"
    if postgresql:
        execute(f"LOCK TABLE {ACTIVITY} IN SHARE MODE")  # no activity written until this commits
        for name, body in PG_FUNCTIONS.items():
            function = f"{TALLY}_{name}"
            execute(f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$")
            execute(f"CREATE TRIGGER {function} {PG_TRIGGERS[name].format(table=ACTIVITY)} EXECUTE FUNCTION {function}()")
    else:
        for name, (when, body) in SQLITE_TRIGGERS.items():
            execute(f"CREATE TRIGGER {TALLY}_{name} {when.format(table=ACTIVITY)} BEGIN {body} END")
    execute(FILL)
    if postgresql:
        execute(f"ANALYZE {TALLY}")


def drop_triggers(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        for name in SQLITE_TRIGGERS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {TALLY}_{name}")
        return
    for name in PG_FUNCTIONS:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TALLY}_{name} ON {ACTIVITY}")
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {TALLY}_{name}()")


class Migration(migrations.Migration):
    dependencies = [("contacts", "0008_analyze_contact_name_indexes")]

    operations = [
        migrations.CreateModel(
            name="ActivityTally",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "contact", "kind", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("email_open", "Email open"),
                            ("email_click", "Email click"),
                            ("site_visit", "Site visit"),
                            ("page_view", "Page view"),
                            ("content_download", "Content download"),
                            ("form_submit", "Form submission"),
                            ("webinar_attend", "Webinar attended"),
                            ("pricing_view", "Pricing page view"),
                            ("feature_comparison", "Feature comparison view"),
                            ("demo_request", "Demo request"),
                            ("purchase", "Purchase"),
                            ("support_ticket_opened", "Support ticket opened"),
                            ("support_ticket_closed", "Support ticket closed"),
                            ("sales_touch", "Sales touch"),
                        ],
                        max_length=32,
                    ),
                ),
                ("n", models.PositiveIntegerField()),
                (
                    "contact",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="contacts.contact",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "activity tallies",
                "indexes": [models.Index(fields=["kind", "n"], name="tally_kind_n_idx")],
            },
        ),
        migrations.RunPython(install_triggers, drop_triggers),
    ]
