"""Automations: a contact joins or leaves a segment -> enrol, score, notify, call a webhook.

Each MembershipChange that triggers an automation gets one AutomationRun row; the unique
(automation, change) pair is what makes a change run at most once per automation, and the run's
status, attempts and error are what the admin shows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Max, Q
from django.utils import timezone

from contacts.models import Contact
from segments.models import ChangeKind, MembershipChange, Segment, SegmentStatus

MAX_ATTEMPTS = 5


class NurtureSequence(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True, help_text="What the sequence sends and to whom")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EnrolmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"
    EXITED = "exited", "Exited"


class Enrolment(models.Model):
    sequence = models.ForeignKey(NurtureSequence, on_delete=models.CASCADE, related_name="enrolments")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="nurture_enrolments")
    status = models.CharField(max_length=10, choices=EnrolmentStatus.choices, default=EnrolmentStatus.ACTIVE)
    automation = models.ForeignKey(
        "activation.Automation", null=True, blank=True, on_delete=models.SET_NULL, related_name="enrolments"
    )
    enrolled_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-enrolled_at", "-id"]
        constraints = [
            # Automations insert with ON CONFLICT DO NOTHING: a contact already in the sequence stays put.
            models.UniqueConstraint(
                fields=["sequence", "contact"],
                condition=Q(status="active"),
                name="enrolment_one_active_per_contact",
            ),
        ]
        indexes = [models.Index(fields=["contact", "status"], name="enrolment_contact_status_idx")]

    def __str__(self) -> str:
        return f"contact {self.contact_id} in {self.sequence} ({self.status})"


class AutomationQuerySet(models.QuerySet["Automation", "Automation"]):
    def enabled(self) -> AutomationQuerySet:
        return self.filter(enabled=True)


class Automation(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    trigger_segment = models.ForeignKey(Segment, on_delete=models.PROTECT, related_name="automations")
    trigger = models.CharField(
        max_length=5, choices=ChangeKind.choices, default=ChangeKind.JOIN, help_text="React when a contact…"
    )
    enabled = models.BooleanField(default=True)
    suppression_segments = models.ManyToManyField(
        Segment,
        blank=True,
        related_name="suppressing_automations",
        help_text="Members of these segments (and of every global suppression) are skipped",
    )
    starts_after_change = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="Membership changes up to this id happened before the automation was switched on",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AutomationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        """Save; switching an automation on starts it from now, without replaying older changes."""
        switched_on = self.enabled and (
            self.pk is None or not Automation.objects.filter(pk=self.pk, enabled=True).exists()
        )
        if switched_on:
            self.starts_after_change = MembershipChange.objects.aggregate(last=Max("id"))["last"] or 0
        super().save(*args, **kwargs)

    def clean(self) -> None:
        segment = getattr(self, "trigger_segment", None)
        if segment is not None and segment.status == SegmentStatus.ARCHIVED:
            raise ValidationError({"trigger_segment": f"Segment {segment.name!r} is archived; it no longer changes."})


class ActionKind(models.TextChoices):
    ENROL = "enrol", "Enrol in a nurture sequence"
    ADJUST_SCORE = "adjust_score", "Adjust lead score"
    NOTIFY_OWNER = "notify_owner", "Notify the contact's owner"
    WEBHOOK = "webhook", "Call a webhook destination"


class AutomationAction(models.Model):
    automation = models.ForeignKey(Automation, on_delete=models.CASCADE, related_name="actions")
    position = models.PositiveSmallIntegerField(default=0, help_text="Actions run in this order")
    kind = models.CharField(max_length=20, choices=ActionKind.choices)
    sequence = models.ForeignKey(
        NurtureSequence, null=True, blank=True, on_delete=models.PROTECT, related_name="automation_actions"
    )
    score_delta = models.IntegerField(null=True, blank=True, help_text="Points to add (negative to subtract)")
    destination = models.ForeignKey(
        "activation.Destination",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="automation_actions",
        limit_choices_to={"kind": "webhook"},
        help_text="Webhook destination to call with the contacts that triggered the automation",
    )

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="enrol") | Q(sequence__isnull=False), name="automation_action_enrol_has_sequence"
            ),
            models.CheckConstraint(
                condition=~Q(kind="adjust_score") | (Q(score_delta__isnull=False) & ~Q(score_delta=0)),
                name="automation_action_score_has_delta",
            ),
            models.CheckConstraint(
                condition=~Q(kind="webhook") | Q(destination__isnull=False),
                name="automation_action_webhook_has_destination",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == ActionKind.ENROL:
            return f"enrol in {self.sequence}"
        if self.kind == ActionKind.ADJUST_SCORE:
            return f"lead score {self.score_delta:+d}"
        if self.kind == ActionKind.WEBHOOK:
            return f"call webhook {self.destination}"
        return self.get_kind_display()

    def clean(self) -> None:
        if self.kind == ActionKind.ENROL and self.sequence_id is None:
            raise ValidationError({"sequence": "Choose the nurture sequence to enrol contacts in."})
        if self.kind == ActionKind.ADJUST_SCORE and not self.score_delta:
            raise ValidationError({"score_delta": "Enter the points to add or subtract (not zero)."})
        if self.kind == ActionKind.WEBHOOK:
            if self.destination is None:
                raise ValidationError({"destination": "Choose the webhook destination to call."})
            if self.destination.kind != "webhook":
                raise ValidationError({"destination": f"{self.destination} is not a webhook destination."})


class AutomationRunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped (suppressed)"
    FAILED = "failed", "Failed"


def claim_lease() -> timedelta:
    return timedelta(seconds=settings.AUTOMATION_CLAIM_LEASE_SECONDS)


def next_attempt_at(attempts: int, *, now: datetime) -> datetime | None:
    """When to try again after `attempts` failed ones: 1, 2, 4, 8 minutes, none after MAX_ATTEMPTS."""
    return now + timedelta(minutes=2 ** (attempts - 1)) if attempts < MAX_ATTEMPTS else None


class AutomationRunQuerySet(models.QuerySet["AutomationRun", "AutomationRun"]):
    def claimable(self, *, now: datetime) -> AutomationRunQuerySet:
        """Runs a worker may take: new, failed and due for a retry, or held by a worker that died.

        A worker renews the heartbeat of the runs it holds while it works on them (activation/automations.py);
        runs whose heartbeat is older than AUTOMATION_CLAIM_LEASE_SECONDS lost their worker.
        """
        return self.filter(
            Q(status=AutomationRunStatus.PENDING)
            | Q(status=AutomationRunStatus.FAILED, attempts__lt=MAX_ATTEMPTS, next_attempt_at__lte=now)
            | Q(status=AutomationRunStatus.RUNNING, heartbeat_at__lt=now - claim_lease())
        )

    def retry(self) -> int:
        """Queue failed runs again now (the admin's "retry" action); returns how many."""
        failed = self.filter(status=AutomationRunStatus.FAILED)
        return failed.update(status=AutomationRunStatus.PENDING, next_attempt_at=None)


class AutomationRun(models.Model):
    automation = models.ForeignKey(Automation, on_delete=models.CASCADE, related_name="runs")
    change = models.ForeignKey(MembershipChange, on_delete=models.CASCADE, related_name="automation_runs")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="automation_runs")
    status = models.CharField(max_length=10, choices=AutomationRunStatus.choices, default=AutomationRunStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    done_actions = models.JSONField(
        default=list, blank=True, help_text="Ids of the actions already applied; a retry skips them"
    )
    claim_token = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker that claimed it")
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Renewed by the claiming worker while it works (every RUN_HEARTBEAT_SECONDS)"
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    skip_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = AutomationRunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["automation", "change"], name="automation_run_once_per_change"),
        ]
        indexes = [
            # process_pending(): claimable runs by status, oldest first.
            models.Index(fields=["status", "next_attempt_at"], name="automation_run_status_idx"),
            models.Index(fields=["claim_token"], name="automation_run_claim_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.automation} for change {self.change_id} ({self.status})"


class NotificationQuerySet(models.QuerySet["Notification", "Notification"]):
    def unread(self) -> NotificationQuerySet:
        return self.filter(read_at__isnull=True)


class Notification(models.Model):
    """In-app message to a user (a contact's owner), shown on their notifications page."""

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    automation = models.ForeignKey(Automation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    run = models.ForeignKey(AutomationRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at"], name="notification_recipient_idx")]

    def __str__(self) -> str:
        return self.message


class ErasureNoticeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class ErasureNotice(models.Model):
    """An erased contact to announce to a webhook destination an automation posted it to
    (activation/erasure_notices.py); one per destination and contact, so it is sent once.

    contact_id is a plain integer: the contact is gone, and its id is all the notice says of it.
    """

    destination = models.ForeignKey("activation.Destination", on_delete=models.CASCADE, related_name="+")
    contact_id = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=ErasureNoticeStatus.choices, default=ErasureNoticeStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["destination", "contact_id"], name="erasure_notice_once"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="erasure_notice_status_idx")]

    def __str__(self) -> str:
        return f"erasure of contact {self.contact_id} to {self.destination_id} ({self.status})"
