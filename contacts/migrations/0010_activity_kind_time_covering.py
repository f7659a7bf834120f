"""The (kind, occurred_at) index on Activity also carries contact_id and value (PostgreSQL).

Window scans by kind (a rule's grouped counts and sums, metrics) then read the index alone: a year
of purchases at 10M activities lies on ~50,000 heap pages and on ~1,800 pages of this index. The
new index is built before the old one goes. SQLite ignores INCLUDE: there it stays (kind, occurred_at).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("contacts", "0009_activity_tally")]

    operations = [
        migrations.AddIndex(
            model_name="activity",
            index=models.Index(
                fields=["kind", "occurred_at"], include=("contact", "value"), name="activity_kind_time_cover_idx"
            ),
        ),
        migrations.RemoveIndex(model_name="activity", name="activity_kind_time_idx"),
    ]
