# Contact.company, Contact.owner and LifecycleChange.contact lose the index Django gives a foreign key:
# contact_company_idx (company_id) duplicates the first, contact_owner_stage_idx (owner_id,
# lifecycle_stage) and lifecycle_contact_stage_idx (contact_id, ...) lead with the others, and every
# index is written by each imported contact (issue 20's import speed). Only the indexes go: AlterField
# would also drop and re-add the foreign keys, checking every stored row again under a lock.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

INDEXES = {  # name: (table, column)
    "contacts_contact_company_id_537aca39": ("contacts_contact", "company_id"),
    "contacts_contact_owner_id_0103c1ee": ("contacts_contact", "owner_id"),
    "contacts_lifecyclechange_contact_id_9bd11635": ("contacts_lifecyclechange", "contact_id"),
}


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0023_catch_up_liveness"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
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
                migrations.AlterField(
                    model_name="contact",
                    name="company",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="contacts",
                        to="contacts.company",
                    ),
                ),
                migrations.AlterField(
                    model_name="contact",
                    name="owner",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="owned_contacts",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="lifecyclechange",
                    name="contact",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="lifecycle_changes",
                        to="contacts.contact",
                    ),
                ),
            ],
        ),
    ]
