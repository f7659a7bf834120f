"""Contact search orders by (lower(last_name), lower(first_name), id): one index serves that order
and the last-name prefix lookups the old lower(last_name) index served. Built before the old one goes."""

import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('contacts', '0005_metrics_lapse_window_fewer_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name='contact',
            index=models.Index(django.db.models.functions.text.Lower('last_name'), django.db.models.functions.text.Lower('first_name'), models.F('id'), name='contact_name_order_idx'),
        ),
        migrations.RemoveIndex(
            model_name='contact',
            name='contact_lower_last_name_idx',
        ),
    ]
