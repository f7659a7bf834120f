"""Destinations, activations and export runs; model clean() holds the checks."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from activation.models import Activation, Destination, ExportRun
from api.models import Scope
from api.permissions import describe_caller, require_scopes
from api.serializers.strict import StrictInput
from segments.models import Segment


def _clean(instance) -> None:
    try:
        instance.clean()
    except DjangoValidationError as error:
        detail = error.message_dict if hasattr(error, "error_dict") else error.messages
        raise serializers.ValidationError(detail) from None


class DestinationSerializer(StrictInput, serializers.ModelSerializer):
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Webhook signing secret; never returned",
    )
    has_secret = serializers.SerializerMethodField()

    class Meta:
        model = Destination
        fields = [
            "id", "name", "kind", "min_audience_size", "csv_columns", "remove_gmail_dots", "linkedin_plain_email",
            "url", "secret", "has_secret", "batch_size", "is_internal", "internal_set_by", "internal_set_at",
            "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["internal_set_by", "internal_set_at", "created_at", "updated_at"]
        extra_kwargs = {"is_internal": {"help_text": "Setting it (or changing the URL while it is set) needs the "
                                        "activations:internal scope; recorded in internal_set_by/_at"}}  # fmt: skip

    def get_has_secret(self, destination: Destination) -> bool:
        return bool(destination.secret)

    def validate(self, attrs: dict) -> dict:
        instance = Destination(**{**self._current(), **attrs})
        request = self.context["request"]
        opens_internal_network = instance.opens_internal_network(previous=self.instance)
        if opens_internal_network:
            require_scopes(request, Scope.ACTIVATIONS_INTERNAL)
        _clean(instance)
        if opens_internal_network:
            instance.record_internal_change(by=describe_caller(request))
            attrs.update(internal_set_by=instance.internal_set_by, internal_set_at=instance.internal_set_at)
        return attrs

    def _current(self) -> dict:
        if self.instance is None:
            return {}
        return {f.attname: getattr(self.instance, f.attname) for f in Destination._meta.concrete_fields}


class ActivationSerializer(StrictInput, serializers.ModelSerializer):
    segment = serializers.SlugRelatedField(slug_field="slug", queryset=Segment.objects.all())
    suppression_segments = serializers.SlugRelatedField(
        slug_field="slug", queryset=Segment.objects.all(), many=True, required=False
    )

    class Meta:
        model = Activation
        fields = [
            "id", "name", "segment", "destination", "suppression_segments", "mode", "schedule_minutes", "enabled",
            "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["created_at", "updated_at"]

    def validate(self, attrs: dict) -> dict:
        current = (
            {"segment": self.instance.segment, "schedule_minutes": self.instance.schedule_minutes}
            if self.instance
            else {}
        )
        values = {**current, **{k: v for k, v in attrs.items() if k in ("segment", "schedule_minutes")}}
        _clean(Activation(**values))
        return attrs


class DownloadLinksSerializer(serializers.Serializer):
    added = serializers.URLField(allow_null=True, help_text="The exported (or added, for delta) members file")
    removed = serializers.URLField(allow_null=True, help_text="Delta runs: the removed members file")


class ExportRunSerializer(serializers.ModelSerializer):
    download = serializers.SerializerMethodField(
        help_text="Links to the run's files for keys with activations:run; null otherwise"
    )

    class Meta:
        model = ExportRun
        fields = [
            "id", "activation", "status", "mode", "created_at", "started_at", "finished_at", "attempts", "worker",
            "heartbeat_at", "retry_at",
            "members_count", "suppressed_count", "skipped_count", "exported_count", "added_count", "removed_count",
            "file_sha256", "removed_file_sha256", "error", "report", "held_back", "download",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(DownloadLinksSerializer(allow_null=True))
    def get_download(self, run: ExportRun) -> dict | None:
        if not self.context.get("may_download"):
            return None
        request = self.context["request"]
        links = {}
        for which, name in (("added", run.file_path), ("removed", run.removed_file_path)):
            url = reverse("api:export-run-download", args=[run.pk, which])
            links[which] = request.build_absolute_uri(url) if name and run.status == "succeeded" else None
        return links
