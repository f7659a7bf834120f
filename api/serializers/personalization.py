"""The shape of activation.personalization.personalize() for the OpenAPI schema."""

from rest_framework import serializers


class PersonalizedContactSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    lifecycle_stage = serializers.CharField()


class PersonalizedSegmentSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    joined_at = serializers.DateTimeField()


class VariantRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    segment = serializers.CharField()
    priority = serializers.IntegerField()


class CtaSerializer(serializers.Serializer):
    text = serializers.CharField(allow_blank=True)
    url = serializers.CharField(allow_blank=True)


class ExperimentArmSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    arm = serializers.ChoiceField(choices=["specific", "generic"])


class CampaignContentSerializer(serializers.Serializer):
    campaign = serializers.CharField()
    name = serializers.CharField()
    variant = VariantRefSerializer(allow_null=True, help_text="The segment variant chosen; null: the default")
    subject = serializers.CharField(allow_blank=True)
    preheader = serializers.CharField(allow_blank=True)
    content_blocks = serializers.ListField(child=serializers.JSONField())
    cta = CtaSerializer()
    experiment = ExperimentArmSerializer(
        allow_null=True, help_text="The experiment arm this content was served under; null: no experiment"
    )


class PersonalizationSerializer(serializers.Serializer):
    contact = PersonalizedContactSerializer()
    segments = PersonalizedSegmentSerializer(many=True)
    interests = serializers.ListField(child=serializers.CharField())
    top_topics = serializers.ListField(
        child=serializers.JSONField(), help_text='From the contact\'s metrics: [{"topic", "share"}], strongest first'
    )
    products_of_interest = serializers.ListField(child=serializers.JSONField(), help_text="Strongest intent first")
    engagement_level = serializers.CharField(allow_blank=True)
    campaigns = CampaignContentSerializer(many=True)
