from django.apps import AppConfig
from django.db.models.signals import post_migrate

from contacts.roles import sync_roles_after_migrate


class ContactsConfig(AppConfig):
    name = "contacts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Models added later (segments, activation, ...) get their permissions when their own
        # app's post_migrate runs, so the roles are synced again after each of those apps.
        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="contacts.sync_roles")
        # Changed contacts get their metrics recomputed first thing in the catch-up task. Imported
        # here because contacts.tasks reads models, which are not loaded when this module is imported.
        from contacts.changes import add_deriver
        from contacts.tasks import recompute_changed_metrics

        add_deriver(recompute_changed_metrics)
