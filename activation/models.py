"""Destinations, activations and export runs: how segment members leave the building (issue 5).

Automations, campaigns and personalization live beside these in their own modules.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone
from django_q.models import Schedule

from activation.webhooks import check_url
from segments.models import Segment, SegmentStatus

audit_log = logging.getLogger("crmseg.audit")

# Columns a CSV destination may choose, in the order of this list's keys when shown as help.
CSV_COLUMNS = {
    "id": "Contact id",
    "email": "Email (trimmed, lower case)",
    "first_name": "First name",
    "last_name": "Last name",
    "phone": "Phone (E.164)",
    "job_title": "Job title",
    "company": "Company name",
    "company_domain": "Company domain",
    "country": "Country (ISO alpha-2)",
    "region": "State or region",
    "city": "City",
    "postal_code": "Postal code",
    "street_address": "Street address",
    "lifecycle_stage": "Lifecycle stage",
    "lead_score": "Lead score",
}


def may_mark_internal(user) -> bool:
    """Only superusers may let a webhook reach our own network (API keys: the activations:internal scope)."""
    return bool(user.is_active and user.is_superuser)


def describe_user(user) -> str:
    return f"user {user.get_username()!r} (id {user.pk})"


class DestinationKind(models.TextChoices):
    CSV = "csv", "CSV file"
    GOOGLE = "google_customer_match", "Google Customer Match file"
    META = "meta_custom_audience", "Meta Custom Audience file"
    LINKEDIN = "linkedin_matched_audience", "LinkedIn Matched Audience file"
    WEBHOOK = "webhook", "Webhook"
    DIRECT_MAIL = "direct_mail", "Direct mail list"


class Destination(models.Model):
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=40, choices=DestinationKind.choices)
    min_audience_size = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Refuse exports of fewer members than this; blank uses the default for the kind "
        "(ACTIVATION_MIN_AUDIENCE_SIZE in settings)",
    )

    # CSV file
    csv_columns = models.JSONField(
        default=list, blank=True, help_text="CSV only: column names, in order. Allowed: " + ", ".join(CSV_COLUMNS)
    )
    # Google Customer Match
    remove_gmail_dots = models.BooleanField(
        default=False, help_text="Google only: drop dots in the local part of gmail.com / googlemail.com addresses"
    )
    # LinkedIn Matched Audience
    linkedin_plain_email = models.BooleanField(
        default=False, help_text="LinkedIn only: send the normalised email in clear instead of its SHA-256"
    )
    # Webhook
    url = models.URLField(max_length=500, blank=True, help_text="Webhook only: HTTPS endpoint")
    secret = models.CharField(
        max_length=200, blank=True, help_text="Webhook only: HMAC-SHA256 signing secret (never shown back)"
    )
    batch_size = models.PositiveIntegerField(default=1000, help_text="Webhook only: members per request")
    is_internal = models.BooleanField(
        default=False,
        help_text="Webhook only: the endpoint is on our own network; allows loopback, private and link-local "
        "addresses and plain http. Only a superuser (or an API key with activations:internal) may set it.",
    )
    internal_set_by = models.CharField(
        max_length=200,
        blank=True,
        editable=False,
        help_text="Who last marked this destination internal or changed the URL of it while internal",
    )
    internal_set_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def is_file(self) -> bool:
        return self.kind != DestinationKind.WEBHOOK

    def effective_min_audience_size(self) -> int:
        if self.min_audience_size is not None:
            return self.min_audience_size
        return settings.ACTIVATION_MIN_AUDIENCE_SIZE[self.kind]

    def opens_internal_network(self, *, previous: Destination | None) -> bool:
        """Whether saving this over `previous` (None when new) lets webhooks reach our own network.

        Marking a destination internal does, and so does pointing one that is internal at another
        URL (or turning it into a webhook); these need the internal permission (may_mark_internal).
        """
        if not self.is_internal:
            return False
        if previous is None or not previous.is_internal:
            return True
        return previous.url != self.url or previous.kind != self.kind

    def record_internal_change(self, *, by: str, now: datetime | None = None) -> None:
        """Note who opened our network to this destination, before it is saved (and in the log)."""
        self.internal_set_by = by[:200]
        self.internal_set_at = now or timezone.now()
        audit_log.warning("destination %r marked internal with URL %r by %s", self.name, self.url, by)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind == DestinationKind.CSV or self.csv_columns:
            # Other kinds ignore the columns, but they are still checked: none is stored that could not be used.
            errors.update(_csv_column_errors(self.csv_columns))
        if self.kind == DestinationKind.WEBHOOK:
            if not self.url:
                errors["url"] = "A webhook destination needs an HTTPS URL."
            else:
                try:
                    check_url(self.url, internal=self.is_internal)
                except ValidationError as exc:
                    errors["url"] = exc.messages[0]
            if not self.secret:
                errors["secret"] = "A webhook destination needs a signing secret."
            if self.batch_size < 1:
                errors["batch_size"] = "The batch size must be at least 1."
        if errors:
            raise ValidationError(errors)


def _csv_column_errors(columns: object) -> dict[str, str]:
    if not isinstance(columns, list) or not columns:
        return {"csv_columns": 'Choose at least one CSV column, e.g. ["email", "first_name"].'}
    for index, column in enumerate(columns):
        if not isinstance(column, str) or column not in CSV_COLUMNS:
            allowed = ", ".join(CSV_COLUMNS)
            return {"csv_columns": f"Unknown CSV column {column!r} at position {index + 1} (allowed: {allowed})."}
    if len(set(columns)) != len(columns):
        return {"csv_columns": "Each CSV column may be chosen once."}
    return {}


class ActivationMode(models.TextChoices):
    FULL = "full", "Full (every member, every run)"
    DELTA = "delta", "Delta (adds and removes since the last successful run)"


class Activation(models.Model):
    name = models.CharField(max_length=200)
    segment = models.ForeignKey(Segment, on_delete=models.PROTECT, related_name="activations")
    destination = models.ForeignKey(Destination, on_delete=models.PROTECT, related_name="activations")
    suppression_segments = models.ManyToManyField(
        Segment,
        blank=True,
        related_name="suppressing_activations",
        help_text="Members of these segments are kept out (global suppressions always apply)",
    )
    mode = models.CharField(max_length=10, choices=ActivationMode.choices, default=ActivationMode.FULL)
    schedule_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Run every N minutes; blank for manual runs only"
    )
    enabled = models.BooleanField(default=True)
    schedule = models.OneToOneField(
        Schedule, null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        with transaction.atomic():
            super().save(*args, **kwargs)
            self.sync_schedule()

    def delete(self, *args, **kwargs):
        for run in self.runs.exclude(file_path="", removed_file_path=""):
            run.delete_files()
        with transaction.atomic():
            schedule_id = self.schedule_id
            result = super().delete(*args, **kwargs)
            Schedule.objects.filter(pk=schedule_id).delete()
        return result

    def clean(self) -> None:
        if self.segment_id and self.segment.status == SegmentStatus.ARCHIVED:
            raise ValidationError(
                {"segment": f"Segment {self.segment.name!r} is archived; activate it or choose another segment."}
            )
        if self.schedule_minutes == 0:
            raise ValidationError({"schedule_minutes": "Run at least every 1 minute, or leave blank for manual."})

    def sync_schedule(self) -> None:
        """Keep the django-q2 Schedule row in step: present while enabled and scheduled, gone otherwise."""
        wanted = self.enabled and bool(self.schedule_minutes)
        if not wanted:
            if self.schedule_id:
                Schedule.objects.filter(pk=self.schedule_id).delete()
                type(self).objects.filter(pk=self.pk).update(schedule=None)
                self.schedule = None
            return
        schedule, _ = Schedule.objects.update_or_create(
            name=f"activation-{self.pk}",
            defaults={
                "func": "activation.tasks.run_activation",
                "args": repr(self.pk),
                "schedule_type": Schedule.MINUTES,
                "minutes": self.schedule_minutes,
                "repeats": -1,
            },
        )
        if self.schedule_id != schedule.pk:
            type(self).objects.filter(pk=self.pk).update(schedule=schedule)
            self.schedule = schedule


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


EXPORT_DIR = "exports"  # under MEDIA_ROOT


class ExportRun(models.Model):
    activation = models.ForeignKey(Activation, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    mode = models.CharField(max_length=10, choices=ActivationMode.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # While running (activation/run_watch.py): who runs it and its last sign of life; after a
    # failure the watchdog may try it again at retry_at.
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker running (or that ran) it")
    session = models.CharField(
        max_length=100, blank=True, help_text="PostgreSQL: that worker's database session (pid@start)"
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="The running run's last sign of life (every RUN_HEARTBEAT_SECONDS)"
    )
    retry_at = models.DateTimeField(null=True, blank=True, help_text="When the failed run is tried again")

    members_count = models.PositiveIntegerField(default=0, help_text="Members of the segment")
    suppressed_count = models.PositiveIntegerField(
        default=0, help_text="Members kept out by suppressions, do-not-contact, bounces and unsubscribes"
    )
    skipped_count = models.PositiveIntegerField(default=0, help_text="Contacts skipped as invalid or incomplete")
    exported_count = models.PositiveIntegerField(default=0)
    added_count = models.PositiveIntegerField(default=0)
    removed_count = models.PositiveIntegerField(default=0)

    file_path = models.CharField(max_length=300, blank=True, help_text="Under MEDIA_ROOT")
    file_size = models.BigIntegerField(null=True, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True)
    removed_file_path = models.CharField(
        max_length=300,
        blank=True,
        help_text="File destinations: the members to remove (every delta run; full runs that remove someone)",
    )
    removed_file_size = models.BigIntegerField(null=True, blank=True)
    removed_file_sha256 = models.CharField(max_length=64, blank=True)

    error = models.TextField(blank=True)
    report = models.JSONField(default=dict, blank=True, help_text="Skipped contacts and why")
    held_back = models.JSONField(
        default=list,
        blank=True,
        help_text="Members held back, by cause: [{cause, label, count, segment_id?}] (activation/held_back.py)",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["activation", "status"], name="exportrun_act_status_idx")]
        constraints = [
            # The claim in activation.exports.claim_run relies on this: two runs of one
            # activation can never be running at the same time, whatever the workers do.
            models.UniqueConstraint(
                fields=["activation"],
                condition=models.Q(status="running"),
                name="exportrun_one_running_per_activation",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.activation} ({self.status})"

    @property
    def file_name(self) -> str:
        """The added members' file name, without its folder."""
        return Path(self.file_path).name if self.file_path else ""

    def export_path(self, *, removals: bool = False) -> str:
        """Relative to MEDIA_ROOT, a name that says what the file is: segment, destination, mode, date
        and run, e.g. `enterprise-prospects_google-ads_delta_2026-12-06_run-42-removed.csv` (the removes
        go to their own file). While being written it ends in ".part" (activation.exports)."""
        suffix = "-removed" if removals else ""
        kind = self.activation.destination.kind.replace("_", "-")
        day = timezone.localdate(self.created_at).isoformat()
        name = f"{self.activation.segment.slug}_{kind}_{self.mode}_{day}_run-{self.pk}{suffix}.csv"
        return f"{EXPORT_DIR}/activation-{self.activation_id}/{name}"

    def delete_files(self) -> None:
        """Remove this run's export files from MEDIA_ROOT (called explicitly when runs are deleted)."""
        root = Path(settings.MEDIA_ROOT)
        for name in (self.file_path, self.removed_file_path):
            if name:
                (root / name).unlink(missing_ok=True)


class MemberAction(models.TextChoices):
    ADD = "add", "Add"
    REMOVE = "remove", "Remove"
    SENT = "sent", "Sent (the removal row of an add the file gave the destination)"


class ExportRunMember(models.Model):
    """The members one run exports, fixed when the run starts so the file and the snapshot agree.

    Filled set-based (INSERT ... SELECT) from activation.audience.audience(); emptied when the run ends.
    contact_id is a plain integer: a contact deleted since the last run must still be sent as a removal.
    `removal`: for a remove, the snapshot's removal row, which the removal file writes; for a `sent`
    row (one per add a file gave the destination, written as the file is), the removal row of what it
    gave, which the snapshot then keeps.
    """

    run = models.ForeignKey(ExportRun, on_delete=models.CASCADE, related_name="+")
    contact_id = models.BigIntegerField()
    action = models.CharField(max_length=6, choices=MemberAction.choices)
    removal = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "action", "contact_id"], name="exportrunmember_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.action} contact {self.contact_id} in run {self.run_id}"


class ExportedMember(models.Model):
    """What the last successful run of an activation left at the destination (the base of the next delta).

    A file destination's row also keeps `removal`: the cells its removal file needs for this contact
    (activation.formats, per kind: the hashed identifiers as uploaded), so the contact can be
    removed after it changed or was deleted or erased; kept only while the destination has it.
    """

    activation = models.ForeignKey(Activation, on_delete=models.CASCADE, related_name="+")
    contact_id = models.BigIntegerField()
    exported_at = models.DateTimeField()
    removal = models.JSONField(
        null=True, blank=True, help_text="File destinations: the removal row for this contact, as sent"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["activation", "contact_id"], name="exportedmember_unique"),
        ]

    def __str__(self) -> str:
        return f"contact {self.contact_id} at activation {self.activation_id}"


class ExportFileScrub(models.Model):
    """Erased persons' rows to take out of an activation's export files on disk (activation/file_scrub.py).

    Written by the erasure's transaction, done by a task after it commits, then deleted: the rows
    (the removal rows the snapshot kept) outlive the erasure by seconds. The files of runs before
    `before_run` (the removal run the erasure queued) are rewritten; that run's removal file and
    any later one are what must reach the destination, and keep the rows.
    """

    activation = models.ForeignKey(Activation, on_delete=models.CASCADE, related_name="+")
    before_run = models.BigIntegerField(help_text="Files of this activation's runs with a smaller id are rewritten")
    rows = models.JSONField(help_text="The erased persons' removal rows, as the snapshot kept them")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"scrub of activation {self.activation_id}'s files before run {self.before_run}"


# Automations and campaign content live in modules of their own; importing them here registers them.
from activation.automation_models import (  # noqa: E402, F401
    Automation,
    AutomationAction,
    AutomationRun,
    Enrolment,
    ErasureNotice,
    Notification,
    NurtureSequence,
)
from activation.campaign_models import Campaign, CampaignVariant  # noqa: E402, F401
from activation.experiment_models import Experiment, Exposure  # noqa: E402, F401
