"""The starter catalog: the segments an operations team starts with, built on the demo data.

Engagement cuts use lead_score until contact metrics exist (then metrics.engagement_score).
`load_catalog` creates what is missing and leaves existing segments (maybe edited) alone.
"""

from __future__ import annotations

from segments.editing import save_segment
from segments.models import Segment, SegmentCategory, SegmentKind

MQL_THRESHOLD = 50


def _reads(topic: str) -> dict:
    return {
        "any": [
            {"event": {"kind": kind, "topic": topic}, "op": "count_gte", "value": 2, "within_days": 90}
            for kind in ("page_view", "content_download", "email_click")
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
        "description": "Opened our emails in the last 180 days but not in the last 30: a win-back campaign target.",
        "rule": {
            "all": [
                {"event": {"kind": "email_open"}, "op": "performed", "within_days": 180},
                {"event": {"kind": "email_open"}, "op": "not_performed", "within_days": 30},
            ]
        },
    },
    {
        "slug": "top-20-engagement",
        "name": "Top 20% by engagement",
        "category": SegmentCategory.ENGAGEMENT,
        "description": "The most engaged fifth of contacts (by lead score until engagement metrics exist): "
        "advocacy, beta and event invitations.",
        "rule": {"field": "lead_score", "op": "top_percent", "value": 20},
    },
    {
        "slug": "bottom-40-engagement",
        "name": "Bottom 40% by engagement",
        "category": SegmentCategory.ENGAGEMENT,
        "description": "The least engaged 40% (by lead score for now): lower email frequency, re-permission.",
        "rule": {"field": "lead_score", "op": "bottom_percent", "value": 40},
    },
    {
        "slug": "cloud-migration-readers",
        "name": "Cloud-migration readers",
        "category": SegmentCategory.INTEREST,
        "description": "Read, downloaded or clicked cloud-migration content at least twice in 90 days: "
        "CloudShift campaigns.",
        "rule": _reads("cloud-migration"),
    },
    {
        "slug": "cybersecurity-readers",
        "name": "Cybersecurity readers",
        "category": SegmentCategory.INTEREST,
        "description": "Read, downloaded or clicked cybersecurity content at least twice in 90 days: "
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
