from django.apps import AppConfig


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
        # Its daily job (score, retrain when due) is in crmseg_site/schedules.py with every other.
