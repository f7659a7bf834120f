from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PredictionsConfig(AppConfig):
    name = "predictions"
    verbose_name = "Predictions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: the tasks read models, which are not loaded when this module is imported.
        from contacts.changes import add_listener
        from predictions.tasks import enqueue_contact_scores

        # Contacts touched by writes are re-scored by every active model, after commit.
        add_listener(enqueue_contact_scores)
        post_migrate.connect(_ensure_daily_schedule, sender=self, dispatch_uid="predictions.daily_schedule")


def _ensure_daily_schedule(**kwargs) -> None:
    from predictions.tasks import ensure_daily_schedule

    ensure_daily_schedule()
