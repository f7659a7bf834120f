# Ensures the every-minute django-q2 schedule that runs automations (idempotent: update_or_create
# by name), so a fresh `migrate` is all a deployment needs. Same values as
# the automations job in crmseg_site/schedules.py, which every migrate applies at its end.
from django.db import migrations

NAME = "activation: process automations"
FUNC = "activation.automations.process_automations"


def ensure_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME, defaults={"func": FUNC, "schedule_type": "I", "minutes": 1, "repeats": -1}
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("activation", "0002_automations_campaigns"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(ensure_schedule, remove_schedule)]
