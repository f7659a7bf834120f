"""MembershipChange gets an index in the order the analytics read each member's history
(segment, contact, changed_at, id), carrying kind (PostgreSQL; SQLite ignores INCLUDE).

The rollups turn the history into membership intervals with a window over exactly that order
(segments/analytics/rollup.py `_fill_intervals`); with the index the window reads it in order
instead of sorting every history row of the analysed segments first.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("segments", "0019_analytics_deletes_keep_history")]

    operations = [
        migrations.AddIndex(
            model_name="membershipchange",
            index=models.Index(
                fields=["segment", "contact", "changed_at", "id"], include=("kind",), name="change_member_time_idx"
            ),
        ),
    ]
