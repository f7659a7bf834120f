"""Create the Operations and Sales groups (see contacts/roles.py).

Permissions are normally created after `migrate` finishes, so they are created here first for
the apps that exist at this point; `ContactsConfig.ready` re-syncs after every later migrate.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from contacts.roles import sync_roles


def create_roles(apps, schema_editor):
    using = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        # Historical app configs carry no models module, which create_permissions takes
        # as "nothing to do"; mark them as having models for the duration of the call.
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=using)
        app_config.models_module = None
    sync_roles(apps=apps, using=using)


def delete_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.using(schema_editor.connection.alias).filter(
        name__in=["Operations", "Sales"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0002_activity_occurred_at_brin"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, delete_roles)]
