# Membership and MembershipChange lose the index Django gives each of their foreign keys: the
# composite indexes lead with the same columns (membership_segment_contact_unique,
# membership_contact_idx, change_segment_time_idx, change_contact_time_idx), and every index is
# written by each row a refresh or a file import adds (issue 20's import speed). Only the indexes go:
# AlterField would also drop and re-add the foreign keys, checking every stored row again under a lock.

import django.db.models.deletion
from django.db import migrations, models

INDEXES = {  # name: (table, column)
    "segments_membership_contact_id_5529227c": ("segments_membership", "contact_id"),
    "segments_membership_segment_id_912e4c68": ("segments_membership", "segment_id"),
    "segments_membershipchange_contact_id_a306fa92": ("segments_membershipchange", "contact_id"),
    "segments_membershipchange_segment_id_02db815f": ("segments_membershipchange", "segment_id"),
}


def _foreign_key(to: str, related_name: str) -> models.ForeignKey:
    return models.ForeignKey(
        db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name=related_name, to=to
    )


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0024_contact_redundant_fk_indexes"),
        ("segments", "0016_refresh_queued"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}")',
                )
                for name, (table, column) in INDEXES.items()
            ],
            state_operations=[
                migrations.AlterField("membership", "contact", _foreign_key("contacts.contact", "memberships")),
                migrations.AlterField("membership", "segment", _foreign_key("segments.segment", "memberships")),
                migrations.AlterField(
                    "membershipchange", "contact", _foreign_key("contacts.contact", "membership_changes")
                ),
                migrations.AlterField("membershipchange", "segment", _foreign_key("segments.segment", "changes")),
            ],
        ),
    ]
