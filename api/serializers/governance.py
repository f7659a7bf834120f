"""Governance: reviews of a segment (segments/governance/)."""

from __future__ import annotations

from rest_framework import serializers

from api.serializers.strict import StrictInput
from segments.models import Review, ReviewDecision, ReviewKind, Segment


class ReviewSerializer(serializers.ModelSerializer):
    segment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    merged_into = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    reviewer = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Review
        fields = [
            "id", "segment", "kind", "decision", "reviewer", "recorded_by", "reviewed_at", "notes", "snapshot",
            "rule_version", "merged_into",
        ]  # fmt: skip
        read_only_fields = fields


class ReviewInputSerializer(StrictInput, serializers.Serializer):
    """A review to record; what depends on the decision is checked by record_review."""

    kind = serializers.ChoiceField(choices=ReviewKind.choices)
    decision = serializers.ChoiceField(choices=ReviewDecision.choices)
    notes = serializers.CharField(required=False, allow_blank=True, default="")
    rule = serializers.JSONField(required=False, default=None, help_text="adjust: the new rule")
    merged_into = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Segment.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="merge: the slug of the segment that survives",
    )
    nul_checked_by = frozenset({"rule"})
