"""Experiments: their set-up (read) and results; activation/experiment_results.py computes them."""

from __future__ import annotations

from rest_framework import serializers

from activation.experiment_models import Arm, Experiment, Metric


class ExperimentSerializer(serializers.ModelSerializer):
    campaign = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    target_segments = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    suppression_segments = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    secondary_metrics = serializers.ListField(child=serializers.ChoiceField(choices=Metric.choices), read_only=True)

    class Meta:
        model = Experiment
        fields = [
            "id", "name", "campaign", "status", "target_segments", "suppression_segments", "specific_percent",
            "generic_percent", "holdout_percent", "metric", "secondary_metrics", "window_days", "baseline_rate",
            "minimum_effect", "created_at", "started_at", "stopped_at",
        ]  # fmt: skip
        read_only_fields = fields


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
    required = serializers.ListField(
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
