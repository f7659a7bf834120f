from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


class SiteConfig(AppConfig):
    """The project itself: what spans the apps (settings, URLs, the recurring jobs)."""

    name = "crmseg_site"

    def ready(self) -> None:
        # Imported here: the schedules module reads models, which are not loaded when apps.py is.
        from crmseg_site.schedules import ensure_schedules_after_migrate

        # post_migrate is sent per app that has models; django_q's Schedule table exists by then.
        # (Also sent after `flush`, which empties the table: the jobs come back with it.)
        post_migrate.connect(
            ensure_schedules_after_migrate, sender=apps.get_app_config("django_q"), dispatch_uid="crmseg_site.schedules"
        )
