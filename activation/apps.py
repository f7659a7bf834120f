from django.apps import AppConfig


class ActivationConfig(AppConfig):
    name = "activation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from activation.automations import memberships_changed
        from activation.demo_campaigns import replay_campaigns
        from activation.erasure import erase_from_activation
        from activation.erasure_notices import queue_erasure_notices
        from activation.merging import MERGE_PARTICIPANT
        from activation.run_watch import watch_exports
        from activation.usage import last_uses
        from contacts.erasure import add_eraser
        from contacts.merging import add_merge_participant
        from segments.demo_history import add_participant
        from segments.events import add_listener
        from segments.governance.usage import add_last_use_source
        from segments.watchdog import add_watcher

        # Segment refreshes and member edits announce their MembershipChange rows: automations run.
        add_listener(memberships_changed)
        # The watchdog of runs also fails dead export runs and retries failed ones.
        add_watcher(watch_exports)
        # An erased contact leaves export reports and every destination that received it.
        add_eraser(erase_from_activation)
        # ... and every automation webhook that was sent it is told it was erased.
        add_eraser(queue_erasure_notices)
        # The segments overview's "last used" reads exports and automations.
        add_last_use_source(last_uses)
        # No contact is merged away while an export of its segment runs; what destinations have of
        # the merged-away contact passes to the survivor.
        add_merge_participant(MERGE_PARTICIPANT)
        # The demo's year of history (load_catalog --history) starts campaigns and records their sends.
        add_participant(replay_campaigns)
