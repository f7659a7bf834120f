"""Experiments: their set-up (read and write) and results; activation/experiment_results.py computes them."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from activation.experiment_models import Arm, Experiment, Metric
from activation.experiments import target_problems
from activation.models import Campaign
from api.errors import Conflict
from api.serializers.strict import StrictInput
from segments.models import Segment


class ExperimentSerializer(StrictInput, serializers.ModelSerializer):
    """An experiment's set-up. Created as a draft; `POST .../start/` runs it. Once contacts have been
    exposed, the campaign, split and window cannot change (409 naming the field): clone it instead."""

    campaign = serializers.SlugRelatedField(slug_field="slug", queryset=Campaign.objects.all())
    target_segments = serializers.SlugRelatedField(
        slug_field="slug",
        many=True,
        queryset=Segment.objects.all(),
        help_text="Each needs a variant in the campaign; each is a slice of the results",
    )
    suppression_segments = serializers.SlugRelatedField(
        slug_field="slug",
        many=True,
        queryset=Segment.objects.all(),
        required=False,
        help_text="Suppression segments or lists kept out of the test (global suppressions always apply)",
    )
    secondary_metrics = serializers.ListField(
        child=serializers.ChoiceField(choices=Metric.choices), required=False, max_length=len(Metric.choices)
    )

    class Meta:
        model = Experiment
        fields = [
            "id", "name", "campaign", "status", "target_segments", "suppression_segments", "specific_percent",
            "generic_percent", "holdout_percent", "metric", "secondary_metrics", "window_days", "baseline_rate",
            "minimum_effect", "created_at", "started_at", "stopped_at",
        ]  # fmt: skip
        read_only_fields = ["status", "created_at", "started_at", "stopped_at"]

    def validate(self, attrs: dict) -> dict:
        """The model's own checks (split adds up to 100, both content arms, variants, window) on the
        merged values, then the targets and suppressions; a design change after exposures is a 409."""
        instance = self.instance
        values = {name: attrs.get(name, getattr(instance, name, None)) for name in DESIGN_INPUT}
        experiment = Experiment(**{name: value for name, value in values.items() if value is not None})
        if instance is not None:
            experiment.pk, experiment.salt = instance.pk, instance.salt
            changed = [name for name in DESIGN_INPUT if name in attrs and attrs[name] != getattr(instance, name)]
            if changed and instance.exposures.exists():
                raise Conflict(
                    "Contacts have been exposed: the campaign, arms, split and window cannot change now. "
                    "Clone the experiment (POST .../clone/) to test another design.",
                    field=changed[0],
                )
        try:
            experiment.clean()
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from None
        targets = attrs.get("target_segments", list(instance.target_segments.all()) if instance else [])
        problem = target_problems(experiment.campaign_id, targets)
        if problem:
            raise serializers.ValidationError({"target_segments": [problem]})
        not_suppressions = [s.slug for s in attrs.get("suppression_segments", []) if not s.is_suppression]
        if not_suppressions:
            raise serializers.ValidationError(
                {"suppression_segments": [f"Not a suppression segment or list: {', '.join(not_suppressions)}."]}
            )
        return attrs


# What the model's clean() reads besides the many-to-many targets.
DESIGN_INPUT = ("campaign", "specific_percent", "generic_percent", "holdout_percent", "window_days")


class IntervalSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)


class DifferenceSerializer(serializers.Serializer):
    absolute = IntervalSerializer(help_text="Arm minus generic: a rate difference, or revenue per contact")
    relative = IntervalSerializer(help_text="Arm / generic - 1")
    test = serializers.CharField()
    p_value = serializers.FloatField(allow_null=True)


class ArmResultSerializer(serializers.Serializer):
    arm = serializers.ChoiceField(choices=Arm.choices)
    exposed = serializers.IntegerField()
    window_complete = serializers.IntegerField(source="matured")
    outcome = serializers.DecimalField(
        max_digits=20, decimal_places=2, coerce_to_string=False, help_text="Converted contacts, or revenue"
    )
    estimate = IntervalSerializer(help_text="Rate (Wilson 95%) or mean per contact (t 95%)")
    versus_generic = DifferenceSerializer(allow_null=True)
    p_adjusted = serializers.FloatField(allow_null=True, help_text="Benjamini–Hochberg across slices, metrics, arms")


class MetricResultSerializer(serializers.Serializer):
    metric = serializers.ChoiceField(choices=Metric.choices)
    arms = ArmResultSerializer(many=True)


class SliceSerializer(serializers.Serializer):
    segment = serializers.CharField(allow_null=True, help_text="The target segment's slug; null: all pooled")
    name = serializers.CharField()
    metrics = MetricResultSerializer(many=True)


class PlanSerializer(serializers.Serializer):
    required = serializers.ListField(  # type: ignore[assignment]  # a declared field; DRF's metaclass takes it off the class
        child=serializers.IntegerField(), allow_null=True, help_text="[segment-specific, generic] contacts"
    )
    window_complete = serializers.ListField(child=serializers.IntegerField(), source="matured")
    reached = serializers.BooleanField()
    basis = serializers.CharField()


class ResultsSerializer(serializers.Serializer):
    experiment = ExperimentSerializer()
    computed_at = serializers.DateTimeField(source="now")
    decision = serializers.CharField()
    plan = PlanSerializer()
    slices = SliceSerializer(many=True)


def results_data(results) -> dict:
    """Results as the serializer reads them (slices with their metrics as lists)."""
    return {
        "experiment": results.experiment,
        "now": results.now,
        "decision": results.decision,
        "plan": results.plan,
        "slices": [
            {
                "segment": s.segment.slug if s.segment else None,
                "name": s.name,
                "metrics": [{"metric": metric, "arms": rows} for metric, rows in s.metrics.items()],
            }
            for s in results.slices
        ],
    }
