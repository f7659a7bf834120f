"""Which content a contact sees: the variant of its best-placed segment, else the campaign default."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from activation.experiment_models import Arm
from activation.experiments import Assignment
from activation.models import Campaign, CampaignVariant
from contacts.models import Contact
from segments.explaining import explain_segment
from segments.models import Membership, MembershipChange, Segment, SegmentStatus
from segments.rules.registry import Field, get_fields
from segments.rules.validation import InvalidRule


@dataclass(frozen=True)
class Content:
    campaign: Campaign
    variant: CampaignVariant | None
    subject: str
    preheader: str
    content_blocks: list
    cta_text: str
    cta_url: str
    experiment: Assignment | None = None

    def as_dict(self) -> dict:
        variant = self.variant
        return {
            "campaign": self.campaign.slug,
            "name": self.campaign.name,
            "variant": None
            if variant is None
            else {"id": variant.pk, "segment": variant.segment.slug, "priority": variant.priority},
            "subject": self.subject,
            "preheader": self.preheader,
            "content_blocks": self.content_blocks,
            "cta": {"text": self.cta_text, "url": self.cta_url},
            "experiment": None
            if self.experiment is None
            else {"id": self.experiment.experiment_id, "arm": self.experiment.arm},
        }


def live_variants() -> QuerySet[CampaignVariant]:
    """Variants whose segment still keeps members, best priority first."""
    return CampaignVariant.objects.exclude(segment__status=SegmentStatus.ARCHIVED).select_related("segment")


def active_campaigns() -> QuerySet[Campaign]:
    """Active campaigns with their live variants prefetched (two queries in all)."""
    return Campaign.objects.active().prefetch_related(Prefetch("variants", queryset=live_variants()))


def content_for(
    campaign: Campaign, variant: CampaignVariant | None, *, experiment: Assignment | None = None
) -> Content:
    """The campaign's default with every non-blank field of the variant laid over it."""
    return Content(
        campaign=campaign,
        variant=variant,
        experiment=experiment,
        subject=(variant and variant.subject) or campaign.subject,
        preheader=(variant and variant.preheader) or campaign.preheader,
        content_blocks=(variant and variant.content_blocks) or campaign.content_blocks,
        cta_text=(variant and variant.cta_text) or campaign.cta_text,
        cta_url=(variant and variant.cta_url) or campaign.cta_url,
    )


def choose(campaign: Campaign, segment_ids: Collection[int]) -> Content:
    """Pick from the campaign's prefetched variants for a contact in `segment_ids`."""
    for variant in sorted(campaign.variants.all(), key=lambda v: v.priority):
        if variant.segment_id in segment_ids:
            return content_for(campaign, variant)
    return content_for(campaign, None)


def contents_for(segments: dict[int, Segment], *, assignments: Collection[Assignment] = ()) -> list[Content]:
    """Every active campaign's content for a contact in these (live, non-archived) segments.

    A campaign under an experiment the contact is assigned to (`assignments`) shows the arm's
    content instead: the variant of the assignment's slice segment, the default (generic), or
    nothing (hold-out: the campaign is left out).

    Two queries: the active campaigns, and only the variants of the contact's segments; the
    variants' segments come from `segments`, so nothing else is loaded.
    """
    campaigns = list(Campaign.objects.active())
    best: dict[int, CampaignVariant] = {}
    by_segment: dict[tuple[int, int], CampaignVariant] = {}
    if segments and campaigns:
        variants = CampaignVariant.objects.filter(campaign__active=True, segment_id__in=segments).order_by("priority")
        for variant in variants:
            variant.segment = segments[variant.segment_id]
            best.setdefault(variant.campaign_id, variant)
            by_segment[(variant.campaign_id, variant.segment_id)] = variant
    tested = {a.campaign_id: a for a in assignments}
    contents = []
    for campaign in campaigns:
        assignment = tested.get(campaign.pk)
        if assignment is None:
            contents.append(content_for(campaign, best.get(campaign.pk)))
        elif assignment.arm == Arm.SPECIFIC:
            chosen = by_segment.get((campaign.pk, assignment.segment_id))
            contents.append(content_for(campaign, chosen, experiment=assignment))
        elif assignment.arm == Arm.GENERIC:
            contents.append(content_for(campaign, None, experiment=assignment))
    return contents


@dataclass(frozen=True)
class VariantCheck:
    """One variant as seen for one contact: is the contact in its segment, since when, and why."""

    variant: CampaignVariant
    joined_at: datetime | None
    join_reason: str
    join_detail: object
    rule_now: str  # the explainer's verdict on the segment's rule today ("" for static lists)

    @property
    def matches(self) -> bool:
        return self.joined_at is not None


def explain_choice(campaign: Campaign, contact: Contact) -> tuple[Content, list[VariantCheck]]:
    """The chosen content plus every variant in priority order with the contact's membership."""
    variants = list(live_variants().filter(campaign=campaign).order_by("priority"))
    segment_ids = [v.segment_id for v in variants]
    joined = dict(
        Membership.objects.filter(contact=contact, segment_id__in=segment_ids).values_list("segment_id", "joined_at")
    )
    last_joins: dict[int, MembershipChange] = {}
    for change in MembershipChange.objects.filter(contact=contact, segment_id__in=joined, kind="join"):
        last_joins.setdefault(change.segment_id, change)  # newest first by the model's ordering
    fields, now = get_fields(), timezone.now()
    checks = [
        VariantCheck(
            variant=v,
            joined_at=joined.get(v.segment_id),
            join_reason=last_joins[v.segment_id].get_reason_display() if v.segment_id in last_joins else "",
            join_detail=last_joins[v.segment_id].detail if v.segment_id in last_joins else None,
            rule_now=explain_rule(v.segment, contact, now=now, fields=fields),
        )
        for v in variants
    ]
    chosen = next((c.variant for c in checks if c.matches), None)
    return content_for(campaign, chosen), checks


def explain_rule(segment: Segment, contact: Contact, *, now: datetime, fields: dict[str, Field]) -> str:
    """The explainer's one-line verdict on the segment's own rule for this contact, now."""
    if not segment.is_rule_based or not segment.rule:
        return ""
    try:
        return explain_segment(segment, contact, now=now, fields=fields).summary()
    except InvalidRule as exc:
        return f"The rule is not valid any more: {exc}"
