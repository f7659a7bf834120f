"""Segments, members and history; rule checks live in segments.rules and segments.editing."""

from __future__ import annotations

from rest_framework import serializers

from api.filters import BIGINT_MAX
from api.models import Scope
from api.permissions import require_scopes
from api.serializers.strict import StrictInput
from segments.models import Membership, MembershipChange, Segment
from segments.rules.reads import reads_contact_data


class SegmentSerializer(StrictInput, serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(  # type: ignore[assignment]  # a declared field; DRF's metaclass takes it off the class
        slug_field="slug", queryset=Segment.objects.all(), allow_null=True, required=False
    )
    change_note = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="Why the rule changes; kept with the rule version in the rule history",
    )

    class Meta:
        model = Segment
        fields = [
            "id", "name", "slug", "description", "kind", "is_global", "parent", "rule", "change_note", "owner",
            "backup_owner", "requires_approval",
            "category", "status", "size", "last_refreshed_at", "last_refresh_duration_ms", "last_refresh_added",
            "last_refresh_removed", "last_refresh_status", "last_refresh_error", "refresh_running_since",
            "refresh_heartbeat_at", "refresh_worker", "refresh_failures", "refresh_retry_at", "created_at",
            "updated_at",
        ]  # fmt: skip
        read_only_fields = [
            "size", "last_refreshed_at", "last_refresh_duration_ms", "last_refresh_added", "last_refresh_removed",
            "last_refresh_status", "last_refresh_error", "refresh_running_since", "refresh_heartbeat_at",
            "refresh_worker", "refresh_failures", "refresh_retry_at", "created_at", "updated_at",
        ]  # fmt: skip
        extra_kwargs = {"rule": {"help_text": "Rule in the segment rule language (dynamic and suppression segments)"}}

    def validate(self, attrs: dict) -> dict:
        """The rule and the rest are checked by save_segment (segments.editing.check_segment)."""
        if "rule" in attrs and reads_contact_data(attrs["rule"]):
            # Its size would answer questions about contact fields, as a preview's count would.
            require_scopes(self.context["request"], Scope.CONTACTS_READ)
        return attrs


class StaticMembersSerializer(StrictInput, serializers.Serializer):
    contacts = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=BIGINT_MAX),
        max_length=10_000,
        help_text="Contact ids (at most 10,000)",
    )


class StaticMembersResultSerializer(serializers.Serializer):
    changed = serializers.IntegerField(help_text="Contacts that joined (add) or left (remove)")
    size = serializers.IntegerField(help_text="Members after the change")


class TaskQueuedSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    status_url = serializers.URLField()


class RuleSerializer(StrictInput, serializers.Serializer):
    rule = serializers.JSONField(help_text="A rule in the segment rule language")
    nul_checked_by = frozenset({"rule"})  # the rule's validation names the JSON path of a NUL

    def validate_rule(self, rule: object) -> dict:
        if not isinstance(rule, dict):
            raise serializers.ValidationError(
                'Expected a rule object: {"all": [...]}, {"any": [...]}, {"not": {...}}, a condition or'
                ' {"in_segment": "<slug>"}.'
            )
        return rule


class PreviewRequestSerializer(RuleSerializer):
    parent = serializers.SlugRelatedField(  # type: ignore[assignment]  # a declared field; DRF's metaclass takes it off the class
        slug_field="slug",
        queryset=Segment.objects.all(),
        required=False,
        allow_null=True,
        help_text="Count within this segment's members, as a child segment of it would (its slug)",
    )


class RuleErrorSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="JSON path inside the rule, e.g. all[1].any[0].op ('' is the rule)")
    message = serializers.CharField()
    code = serializers.CharField()


class RuleValidationSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = RuleErrorSerializer(many=True)  # type: ignore[assignment]  # a declared field; DRF's metaclass takes it off the class


class ContactSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    lifecycle_stage = serializers.CharField()


class PreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Contacts the rule selects now")
    sample = ContactSummarySerializer(many=True, help_text="Up to 10 of them, by id (empty without contacts:read)")


class MemberSerializer(serializers.ModelSerializer):
    contact = ContactSummarySerializer()

    class Meta:
        model = Membership
        fields = ["contact", "joined_at"]


class MembershipChangeSerializer(serializers.ModelSerializer):
    contact = serializers.IntegerField(source="contact_id")
    changed_by = serializers.IntegerField(source="changed_by_id", allow_null=True)

    class Meta:
        model = MembershipChange
        fields = ["id", "contact", "kind", "reason", "changed_at", "detail", "changed_by"]
        extra_kwargs = {"detail": {"help_text": "The deciding conditions with the contact's values; null without "
                                   "contacts:read"}}  # fmt: skip

    def to_representation(self, instance: MembershipChange) -> dict:
        data = super().to_representation(instance)
        if not self.context.get("with_detail"):
            data["detail"] = None
        return data


class ContactMembershipSerializer(serializers.ModelSerializer):
    slug = serializers.CharField(source="segment.slug")
    name = serializers.CharField(source="segment.name")
    kind = serializers.CharField(source="segment.kind")
    explanation = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="With ?explain=1: the explainer's result, reasons and tree for the segment's own rule, and in"
        " `held` why merges keep the contact in a suppression segment whatever its rule says (null for static"
        " segments)",
    )
    propensity = serializers.JSONField(
        required=False,
        help_text="With ?explain=1, for a rule reading metrics.propensity_*: the contact's score of each model it"
        " reads and the factors behind it",
    )

    class Meta:
        model = Membership
        fields = ["slug", "name", "kind", "joined_at", "explanation", "propensity"]


class RuleDiffRowSerializer(serializers.Serializer):
    change = serializers.ChoiceField(choices=["same", "changed", "removed", "added"])
    before = serializers.CharField(allow_null=True, help_text="The line of the rule before, in words")
    before_depth = serializers.IntegerField(allow_null=True)
    after = serializers.CharField(allow_null=True, help_text="The line of the rule after, in words")
    after_depth = serializers.IntegerField(allow_null=True)


class RuleVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    changed_at = serializers.DateTimeField()
    changed_by = serializers.CharField(allow_null=True)
    approved_by = serializers.CharField(allow_null=True, help_text="Who approved it (segments requiring approval)")
    note = serializers.CharField(allow_blank=True)
    size_before = serializers.IntegerField(allow_null=True)
    size_after = serializers.IntegerField(allow_null=True, help_text="After the first full refresh under this rule")
    old_rule = serializers.JSONField(allow_null=True)
    new_rule = serializers.JSONField(allow_null=True)
    diff = RuleDiffRowSerializer(many=True, help_text="The two rules side by side in words, line by line")
