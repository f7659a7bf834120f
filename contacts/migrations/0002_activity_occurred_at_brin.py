"""BRIN index on activity.occurred_at for whole-table window scans (compute_metrics, sweeps).

PostgreSQL only: SQLite has no BRIN, and the B-tree (kind, occurred_at) index serves it there.
"""

from django.db import migrations

CREATE = "CREATE INDEX IF NOT EXISTS activity_occurred_brin_idx ON contacts_activity USING brin (occurred_at)"
DROP = "DROP INDEX IF EXISTS activity_occurred_brin_idx"


def create_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_brin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("contacts", "0001_initial")]
    operations = [migrations.RunPython(create_brin, drop_brin)]
