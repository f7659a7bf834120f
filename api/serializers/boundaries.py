"""Request bodies of the boundary test and the dimension comparison (segments/boundaries.py checks the rest)."""

from __future__ import annotations

from rest_framework import serializers

from api.serializers.strict import StrictInput
from segments.boundaries import OUTCOMES, SCHEMES


class BoundaryTestSerializer(StrictInput, serializers.Serializer):
    field = serializers.CharField(max_length=200, help_text="A number field, e.g. company.employee_count")
    bracketings = serializers.ListField(
        child=serializers.ListField(
            child=serializers.DictField(child=serializers.FloatField(allow_null=True)), min_length=2, max_length=20
        ),
        min_length=2,
        max_length=6,
        help_text="Each a list of half-open brackets (from <= value < to) that meet with no gap or overlap: "
        '[{"from": 1, "to": 50}, {"from": 50, "to": 250}, {"from": 250}]; only the last may leave out "to"',
    )
    outcome = serializers.ChoiceField(choices=OUTCOMES, default="converted")
    days = serializers.IntegerField(min_value=1, max_value=1096, default=90, help_text="Outcomes over these last days")
    campaign = serializers.CharField(max_length=100, default="", allow_blank=True, help_text="responded: this campaign")


class DimensionComparisonSerializer(StrictInput, serializers.Serializer):
    schemes = serializers.ListField(
        child=serializers.ChoiceField(choices=list(SCHEMES)), min_length=2, max_length=len(SCHEMES)
    )
    outcome = serializers.ChoiceField(choices=OUTCOMES, default="converted")
    days = serializers.IntegerField(min_value=1, max_value=1096, default=90)
    campaign = serializers.CharField(max_length=100, default="", allow_blank=True)
    segments = serializers.ListField(
        child=serializers.SlugField(max_length=100), required=False, max_length=30, help_text="For the segments scheme"
    )
