from django.apps import AppConfig


class ActivationConfig(AppConfig):
    name = "activation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from activation.automations import memberships_changed
        from segments.events import add_listener

        # Segment refreshes and member edits announce their MembershipChange rows: automations run.
        add_listener(memberships_changed)
