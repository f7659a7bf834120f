from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    name = "predictions"
    verbose_name = "Predictions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: the tasks read models, which are not loaded when this module is imported.
        from contacts.changes import add_deriver
        from predictions.tasks import score_changed_contacts

        # Contacts changed by writes are re-scored by every active model in the catch-up task,
        # after their metrics (contacts registers its deriver first) and before their segments.
        add_deriver(score_changed_contacts)
        # Its daily job (score, retrain when due) is in crmseg_site/schedules.py with every other.
