"""API keys: one per integration, stored hashed, limited to scopes."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

# How stale last_used_at may get before a request writes it again: one UPDATE a minute per key at most.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class Scope(models.TextChoices):
    CONTACTS_READ = "contacts:read", "Read contacts, companies, activities and property definitions"
    CONTACTS_WRITE = "contacts:write", "Create, update and delete contacts, companies and property definitions"
    CONTACTS_ERASE = "contacts:erase", "Erase contacts: their personal data everywhere, and from every destination"
    ACTIVITIES_WRITE = "activities:write", "Ingest activities"
    SEGMENTS_READ = "segments:read", "Read segments, members and history"
    SEGMENTS_WRITE = "segments:write", "Create, edit and refresh segments; change static members"
    ACTIVATIONS_WRITE = "activations:write", "Manage destinations and activations"
    ACTIVATIONS_RUN = "activations:run", "Start activation runs and download their files"
    ACTIVATIONS_INTERNAL = (
        "activations:internal",
        "Mark webhook destinations internal, letting them reach our own network (with activations:write)",
    )
    PERSONALIZATION_READ = "personalization:read", "Read personalization for a contact"


READ_SCOPES = frozenset({Scope.CONTACTS_READ, Scope.SEGMENTS_READ, Scope.PERSONALIZATION_READ})
# What only superusers hold among signed-in people (API keys only when given it explicitly).
SUPERUSER_SCOPES = frozenset({Scope.ACTIVATIONS_INTERNAL})


def validate_scopes(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Scopes are a list of scope names.", code="invalid_scopes")
    unknown = sorted(set(value) - set(Scope.values))
    if unknown:
        raise ValidationError(
            f"Unknown scope {', '.join(unknown)}; allowed: {', '.join(Scope.values)}.", code="unknown_scope"
        )


class ApiKeyQuerySet(models.QuerySet):
    def usable(self, *, now: datetime) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)


class ApiKey(models.Model):
    """The key itself is shown once at creation; only its SHA-256 is stored (keys are random, 256 bits)."""

    name = models.CharField(max_length=100, help_text="Which integration uses this key")
    prefix = models.CharField(max_length=16, unique=True, editable=False, help_text="Public part, shown in lists")
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, validators=[validate_scopes])
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Leave empty for a key that does not expire")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (crmseg_{self.prefix}_…)"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def is_expired(self, *, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def revoke(self, *, now: datetime | None = None) -> None:
        if self.revoked_at is None:
            self.revoked_at = now or timezone.now()
            self.save(update_fields=["revoked_at"])

    def touch(self, *, now: datetime) -> None:
        """Record use, writing at most once per LAST_USED_RESOLUTION (a conditional UPDATE, no race)."""
        if self.last_used_at is not None and now - self.last_used_at < LAST_USED_RESOLUTION:
            return
        stale = models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ApiKey.objects.filter(stale, pk=self.pk).update(last_used_at=now)
        self.last_used_at = now


class QueuedTask(models.Model):
    """A background task started through the API, so GET /api/v1/tasks/<id>/ can answer for it.

    django-q2 keeps finished tasks (django_q.Task) but not queued ones in a form we can look up;
    this row says the task exists and what it is, and the status comes from django-q2.
    """

    task_id = models.CharField(max_length=32, primary_key=True)
    name = models.CharField(max_length=200, help_text="What the task does, e.g. refresh segment hot-leads")
    created_at = models.DateTimeField(default=timezone.now)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.task_id})"
