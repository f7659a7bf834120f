from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "segments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from contacts.catch_up import watch_catch_up
        from contacts.changes import add_import_listener, add_metrics_listener, add_reader
        from contacts.merging import add_merge_participant
        from contacts.retention import add_check
        from predictions.targets import set_rule_support
        from segments.merges import PARTICIPANT as MERGE_PARTICIPANT
        from segments.outcomes import label_rule_errors, label_rule_members
        from segments.retention import no_rule_reads_past, rolled_up
        from segments.rules.expressions import register_sqlite_functions
        from segments.static import add_imported_contacts
        from segments.tasks import enqueue_after_metrics, refresh_changed
        from segments.watchdog import add_watcher

        # SQLite connections get the functions compiled rules call, whenever each opens.
        connection_created.connect(register_sqlite_functions, dispatch_uid="segments.sqlite_functions")
        # Contacts changed by writes (and their metrics) are re-read by every segment, in the catch-up task.
        add_reader(refresh_changed)
        # The watchdog of runs also fails a dead catch-up task and queues its retry (contacts/catch_up.py).
        add_watcher(watch_catch_up)
        # Recomputed metrics re-evaluate the segments that read them.
        add_metrics_listener(enqueue_after_metrics)
        # A file import's contacts form a static segment, written in the import's own transactions.
        add_import_listener(add_imported_contacts)
        # Propensity models with a custom target read their outcome from a rule.
        set_rule_support(validate=label_rule_errors, matching_ids=label_rule_members)
        # A merge moves the loser's memberships to the survivor and holds it in suppressions.
        add_merge_participant(MERGE_PARTICIPANT)
        # Activity months go only once the analytics rolled them up and no rule reads them.
        add_check(rolled_up)
        add_check(no_rule_reads_past)
