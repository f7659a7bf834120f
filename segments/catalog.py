"""The starter catalog: the segments an operations team starts with, built on the demo data.

Engagement, interest and value segments read the stored contact metrics (`metrics.*`, computed
nightly and after writes by contacts/metrics/).
`load_catalog` creates what is missing and leaves existing segments (maybe edited) alone.
"""

from __future__ import annotations

from segments.editing import save_segment
from segments.models import Segment, SegmentCategory, SegmentKind

MQL_THRESHOLD = 50


def _reads(topic: str) -> dict:
    """Top topic (recency-weighted reading) is `topic`, with at least 40% of the reading."""
    return {
        "all": [
            {"field": "metrics.top_topic", "op": "eq", "value": topic},
            {"field": "metrics.top_topic_share", "op": "gte", "value": 40},
        ]
    }


CATALOG: list[dict] = [
    {
        "slug": "active-mqls-awaiting-sales",
        "name": "Active MQLs awaiting sales contact",
        "category": SegmentCategory.LIFECYCLE,
        "description": "Marketing-qualified leads engaged in the last 30 days that no salesperson has touched in "
        "14 days. Sales works this list first.",
        "rule": {
            "all": [
                {"field": "lifecycle_stage", "op": "eq", "value": "mql"},
                {
                    "any": [
                        {"event": {"kind": kind}, "op": "performed", "within_days": 30}
                        for kind in ("email_click", "site_visit", "pricing_view", "form_submit")
                    ]
                },
                {"event": {"kind": "sales_touch"}, "op": "not_performed", "within_days": 14},
            ]
        },
    },
    {
        "slug": "renewals-next-90-days",
        "name": "Customers approaching renewal (90 days)",
        "category": SegmentCategory.LIFECYCLE,
        "description": "Customers whose renewal date falls in the next 90 days: customer success plans the renewal.",
        "rule": {
            "all": [
                {"field": "lifecycle_stage", "op": "eq", "value": "customer"},
                {"field": "renewal_date", "op": "in_next_days", "value": 90},
            ]
        },
    },
    {
        "slug": "icp-below-mql",
        "name": "ICP match below the MQL threshold",
        "category": SegmentCategory.PERSONA,
        "description": f"Senior people at 200+ employee companies (our ideal customer profile) who are still leads "
        f"with a lead score under {MQL_THRESHOLD}: nurture them toward MQL.",
        "rule": {
            "all": [
                {"field": "company.employee_count", "op": "gte", "value": 200},
                {"field": "seniority", "op": "in", "value": ["director", "vp", "cxo", "owner"]},
                {"field": "lifecycle_stage", "op": "in", "value": ["subscriber", "lead"]},
                {"field": "lead_score", "op": "lt", "value": MQL_THRESHOLD},
            ]
        },
    },
    {
        "slug": "recently-disengaged",
        "name": "Recently disengaged",
        "category": SegmentCategory.ENGAGEMENT,
        "description": "Moderately or highly engaged 60 days ago, no activity in the last 30: a win-back "
        "campaign target.",
        "rule": {"field": "metrics.recently_disengaged", "op": "is_true"},
    },
    {
        "slug": "top-20-engagement",
        "name": "Top 20% by engagement",
        "category": SegmentCategory.ENGAGEMENT,
        "description": "The most engaged fifth of contacts by engagement score (recency-weighted activity): "
        "advocacy, beta and event invitations.",
        "rule": {"field": "metrics.engagement_score", "op": "top_percent", "value": 20},
    },
    {
        "slug": "bottom-40-engagement",
        "name": "Bottom 40% by engagement",
        "category": SegmentCategory.ENGAGEMENT,
        "description": "The least engaged 40% by engagement score (everyone without activity included): lower "
        "email frequency, re-permission.",
        "rule": {"field": "metrics.engagement_score", "op": "bottom_percent", "value": 40},
    },
    {
        "slug": "accelerating-engagement",
        "name": "Accelerating engagement",
        "category": SegmentCategory.ENGAGEMENT,
        "description": "At least twice the activity of the previous 30 days (and 4+ activities) in the last 30: "
        "a buying signal for sales.",
        "rule": {"field": "metrics.is_accelerating", "op": "is_true"},
    },
    {
        "slug": "rfv-champions",
        "name": "RFV champions",
        "category": SegmentCategory.VALUE,
        "description": "Bought recently, often and for the most (recency, frequency and value scores 4–5): "
        "referral and loyalty programmes.",
        "rule": {"field": "metrics.rfv_cell", "op": "eq", "value": "champions"},
    },
    {
        "slug": "at-risk-customers",
        "name": "At-risk customers",
        "category": SegmentCategory.VALUE,
        "description": "Customers who used to buy often but not recently (RFV cell at risk): retention outreach.",
        "rule": {
            "all": [
                {"field": "lifecycle_stage", "op": "in", "value": ["customer", "evangelist"]},
                {"field": "metrics.rfv_cell", "op": "eq", "value": "at_risk"},
            ]
        },
    },
    {
        "slug": "cloud-migration-readers",
        "name": "Cloud-migration readers",
        "category": SegmentCategory.INTEREST,
        "description": "Cloud migration is their top topic, with 40%+ of their recency-weighted reading: "
        "CloudShift campaigns.",
        "rule": _reads("cloud-migration"),
    },
    {
        "slug": "cybersecurity-readers",
        "name": "Cybersecurity readers",
        "category": SegmentCategory.INTEREST,
        "description": "Cybersecurity is their top topic, with 40%+ of their recency-weighted reading: "
        "SecureEdge campaigns.",
        "rule": _reads("cybersecurity"),
    },
    {
        "slug": "enterprise",
        "name": "Enterprise",
        "category": SegmentCategory.ACCOUNT,
        "description": "Contacts at companies with 1,000 or more employees; the enterprise team's book.",
        "rule": {"field": "company.employee_count", "op": "gte", "value": 1000},
    },
    {
        "slug": "enterprise-target-accounts",
        "name": "Enterprise: target accounts",
        "parent": "enterprise",
        "category": SegmentCategory.ACCOUNT,
        "description": "Enterprise contacts at named target accounts: account-based campaigns.",
        "rule": {"field": "company.is_target_account", "op": "is_true"},
    },
    {
        "slug": "enterprise-active-opportunities",
        "name": "Enterprise: active opportunities",
        "parent": "enterprise",
        "category": SegmentCategory.ACCOUNT,
        "description": "Enterprise contacts in an open opportunity: keep marketing quiet and sales informed.",
        "rule": {"field": "lifecycle_stage", "op": "in", "value": ["sql", "opportunity"]},
    },
    {
        "slug": "enterprise-expansion-candidates",
        "name": "Enterprise: expansion candidates",
        "parent": "enterprise",
        "category": SegmentCategory.VALUE,
        "description": "Enterprise customers using 70% or more of what they bought: upsell conversations.",
        "rule": {
            "all": [
                {"field": "lifecycle_stage", "op": "in", "value": ["customer", "evangelist"]},
                {"field": "product_adoption", "op": "gte", "value": 70},
            ]
        },
    },
    {
        "slug": "suppress-active-customers",
        "name": "Suppress: active customers",
        "kind": SegmentKind.SUPPRESSION,
        "category": SegmentCategory.SUPPRESSION,
        "description": "Customers and evangelists; kept out of acquisition campaigns.",
        "rule": {"field": "lifecycle_stage", "op": "in", "value": ["customer", "evangelist"]},
    },
    {
        "slug": "suppress-open-support-tickets",
        "name": "Suppress: open support tickets",
        "kind": SegmentKind.SUPPRESSION,
        "category": SegmentCategory.SUPPRESSION,
        "description": "Opened a support ticket in the last 30 days and had none closed since; kept out of upsell.",
        "rule": {
            "all": [
                {"event": {"kind": "support_ticket_opened"}, "op": "performed", "within_days": 30},
                {"event": {"kind": "support_ticket_closed"}, "op": "not_performed", "within_days": 30},
            ]
        },
    },
    {
        "slug": "suppress-competitors",
        "name": "Suppress: competitors",
        "kind": SegmentKind.SUPPRESSION,
        "is_global": True,
        "category": SegmentCategory.SUPPRESSION,
        "description": "People at competitor companies; kept out of every activation (global suppression).",
        "rule": {"field": "company.is_competitor", "op": "is_true"},
    },
    {
        "slug": "suppress-unreachable",
        "name": "Suppress: unreachable",
        "kind": SegmentKind.SUPPRESSION,
        "is_global": True,
        "category": SegmentCategory.SUPPRESSION,
        "description": (
            "Invalid, unsubscribed, bounced, disposable, mistyped, role or inactive addresses (the list hygiene "
            "check); kept out of every activation (global suppression)."
        ),
        "rule": {"field": "reachability", "op": "neq", "value": "reachable"},
    },
]


def load_catalog(*, owner=None) -> tuple[list[Segment], list[Segment]]:
    """Create the catalog segments that do not exist yet; return (created, already there)."""
    existing = Segment.objects.in_bulk([entry["slug"] for entry in CATALOG], field_name="slug")
    created: list[Segment] = []
    for entry in CATALOG:
        if entry["slug"] in existing:
            continue
        fields = {**entry, "kind": entry.get("kind", SegmentKind.DYNAMIC)}
        parent = fields.pop("parent", None)
        segment = Segment(**fields, owner=owner, parent=existing.get(parent) if parent else None)
        existing[entry["slug"]] = save_segment(segment, user=owner)
        created.append(segment)
    kept = [existing[e["slug"]] for e in CATALOG if existing[e["slug"]] not in created]
    return created, kept
