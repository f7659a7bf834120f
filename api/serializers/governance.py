"""Governance: reviews of a segment (segments/governance/)."""

from __future__ import annotations

from django.contrib.auth.models import User
from rest_framework import serializers

from api.serializers.strict import StrictInput
from segments.models import (
    DraftStatus,
    Review,
    ReviewDecision,
    ReviewKind,
    Segment,
    SegmentCategory,
    SegmentKind,
    SegmentStatus,
)


class ReviewSerializer(serializers.ModelSerializer):
    segment: serializers.SlugRelatedField[Segment] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    merged_into: serializers.SlugRelatedField[Segment] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True
    )
    reviewer: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

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


# -- Response shapes (documentation only: the views build these bodies from segments/governance) --


class DownstreamSegmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()


class ImpactSampleSerializer(serializers.Serializer):
    contact_id = serializers.IntegerField()
    email = serializers.CharField()
    name = serializers.CharField()
    why = serializers.CharField(help_text="The explainer's summary of the new rule for this contact")


class ReceiverSerializer(serializers.Serializer):
    through = serializers.CharField(allow_null=True, help_text="The downstream segment it reads; null: this one")
    what = serializers.CharField(help_text='e.g. "Activation (segment)", "Automation (suppression segments)"')
    name = serializers.CharField()


class ImpactSerializer(serializers.Serializer):
    """What a rule change would do now, compared with the stored members (segments/governance/impact.py)."""

    now = serializers.DateTimeField()
    size_now = serializers.IntegerField()
    joins = serializers.IntegerField()
    leaves = serializers.IntegerField()
    size_after = serializers.IntegerField()
    join_sample = ImpactSampleSerializer(many=True, help_text="A few joiners (empty without contacts:read)")
    leave_sample = ImpactSampleSerializer(many=True, help_text="A few leavers (empty without contacts:read)")
    downstream_segments = DownstreamSegmentSerializer(
        many=True, help_text="Children and rules reading it by in_segment"
    )
    receivers = ReceiverSerializer(many=True, help_text="Activations, automations... that would receive it")


class DraftImpactSerializer(ImpactSerializer):
    """The impact of publishing a pending draft now, or why it cannot be measured (only `error`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False
        self.fields["error"] = serializers.CharField(
            required=False, help_text="The rule no longer validates (e.g. a property it reads was deleted)"
        )


class DiffRowSerializer(serializers.Serializer):
    change = serializers.ChoiceField(choices=["same", "changed", "removed", "added"])
    before = serializers.CharField(allow_null=True, help_text="The live rule's line in words")
    before_depth = serializers.IntegerField(allow_null=True)
    after = serializers.CharField(allow_null=True, help_text="The proposed rule's line in words")
    after_depth = serializers.IntegerField(allow_null=True)


class RuleDraftSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    segment = serializers.CharField(help_text="The segment's slug")
    status = serializers.ChoiceField(choices=DraftStatus.choices)
    author = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    note = serializers.CharField(allow_blank=True)
    rule = serializers.JSONField(help_text="The proposed rule")
    base_rule = serializers.JSONField(help_text="The live rule the draft was made against")
    stale = serializers.CharField(allow_null=True, help_text="Why a pending draft must be rebased first; else null")
    decided_by = serializers.CharField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_note = serializers.CharField(allow_blank=True)
    version = serializers.IntegerField(allow_null=True, help_text="The rule version an approval published")
    diff = DiffRowSerializer(many=True, help_text="Live rule -> proposed rule, line by line in words")
    impact = DraftImpactSerializer(required=False, help_text="On GET of one pending draft: publishing it now")


class RuleDraftListSerializer(serializers.Serializer):
    results = RuleDraftSerializer(many=True, help_text="The newest 50, newest first")


class RejectInputSerializer(StrictInput, serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class SprawlSerializer(serializers.Serializer):
    primary = serializers.IntegerField(help_text="Active primary segments")
    minimum = serializers.IntegerField()
    maximum = serializers.IntegerField()
    verdict = serializers.CharField()


class ReviewDueSerializer(serializers.Serializer):
    cadence = serializers.CharField()
    last_reviewed_at = serializers.DateTimeField(allow_null=True)
    next_due = serializers.DateField(allow_null=True)
    state = serializers.ChoiceField(choices=["off", "overdue", "due", "coming", "ok"])


class HealthFlagSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a declared field; DRF's metaclass takes it off the class
    evidence = serializers.CharField()


class GovernanceRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    slug = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=SegmentKind.choices)
    category = serializers.ChoiceField(choices=SegmentCategory.choices)
    status = serializers.ChoiceField(choices=SegmentStatus.choices)
    size = serializers.IntegerField()
    owner = serializers.CharField(allow_null=True)
    backup_owner = serializers.CharField(allow_null=True)
    reviews = serializers.DictField(child=ReviewDueSerializer(), help_text="By review kind")
    next_due = serializers.DateField(allow_null=True)
    overdue_days = serializers.IntegerField()
    flags = HealthFlagSerializer(many=True)
    health_checked_at = serializers.DateTimeField(allow_null=True)


class GovernanceReportSerializer(serializers.Serializer):
    sprawl = SprawlSerializer()
    total = serializers.IntegerField()
    segments = GovernanceRowSerializer(many=True)
