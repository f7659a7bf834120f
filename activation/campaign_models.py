"""Campaign content by segment: a default and per-segment variants, the best-placed segment wins."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from segments.models import Segment, SegmentStatus

# Block type -> the key that carries its content.
BLOCK_TYPES = {"heading": "text", "text": "text", "image": "url", "button": "url"}


def validate_content_blocks(value: object) -> None:
    """Content blocks are a list of objects like {"type": "heading", "text": "Hello"}."""
    allowed = ", ".join(BLOCK_TYPES)
    if not isinstance(value, list):
        example = '[{"type": "text", "text": "Hi"}]'
        raise ValidationError(f"Content blocks must be a list such as {example}; block types: {allowed}.")
    for index, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            raise ValidationError(f"content_blocks[{index}]: each block is an object whose type is one of {allowed}.")
        key = BLOCK_TYPES[block["type"]]
        if not isinstance(block.get(key), str) or not block[key].strip():
            raise ValidationError(f"content_blocks[{index}]: a {block['type']} block needs a non-empty {key!r}.")


class CampaignQuerySet(models.QuerySet["Campaign", "Campaign"]):
    def active(self) -> CampaignQuerySet:
        return self.filter(active=True)


class Campaign(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    active = models.BooleanField(default=True)
    subject = models.CharField("default subject line", max_length=200)
    preheader = models.CharField("default preheader", max_length=200, blank=True)
    content_blocks = models.JSONField(
        "default content blocks", default=list, blank=True, validators=[validate_content_blocks]
    )
    cta_text = models.CharField("default call-to-action text", max_length=100, blank=True)
    cta_url = models.URLField("default call-to-action URL", max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CampaignVariant(models.Model):
    """Content for the members of one segment. Blank fields fall back to the campaign's default."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    segment = models.ForeignKey(Segment, on_delete=models.PROTECT, related_name="campaign_variants")
    priority = models.PositiveSmallIntegerField(
        help_text="1 is checked first: a contact in several segments gets the variant with the lowest number"
    )
    subject = models.CharField("subject line", max_length=200, blank=True)
    preheader = models.CharField(max_length=200, blank=True)
    content_blocks = models.JSONField(default=list, blank=True, validators=[validate_content_blocks])
    cta_text = models.CharField("call-to-action text", max_length=100, blank=True)
    cta_url = models.URLField("call-to-action URL", max_length=500, blank=True)

    class Meta:
        ordering = ["campaign", "priority"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "segment"], name="campaign_variant_segment_unique"),
            models.UniqueConstraint(fields=["campaign", "priority"], name="campaign_variant_priority_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} · {self.segment} (priority {self.priority})"

    def clean(self) -> None:
        segment = getattr(self, "segment", None)
        if segment is None:
            return
        if segment.is_suppression:
            raise ValidationError({"segment": f"{segment.name!r} is a suppression segment; choose an audience."})
        if segment.status == SegmentStatus.ARCHIVED:
            raise ValidationError({"segment": f"{segment.name!r} is archived; its members are no longer kept."})
