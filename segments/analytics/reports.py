"""Measures as plain rows and dicts: what the CSV, the API and the pages print."""

from __future__ import annotations

from datetime import date

from django.utils import timezone

from .channels import CHANNELS, DEFAULT_STAGE
from .measures import Comparison, Measures, check_channel, check_stage
from .periods import BadParameter, Period, last_full_quarter, parse_period
from .wilson import Estimate

SORTS = {
    "name": lambda m: m.name.lower(),
    "size": lambda m: m.members_end,
    "growth": lambda m: m.growth,
    "engagement": lambda m: m.engagement.value or 0,
    "conversion": lambda m: m.conversion.value or 0,
    "revenue": lambda m: m.revenue_per_contact.value or 0,
}


def read_period(text: str | None, *, today: date | None = None, parameter: str = "period") -> Period:
    """The `period` parameter, or the last full quarter when it is absent."""
    if text is None or not text.strip():
        return last_full_quarter(today or timezone.localdate())
    return parse_period(text, parameter=parameter)


def read_stage(text: str | None) -> str:
    return check_stage(text.strip().lower()) if text and text.strip() else DEFAULT_STAGE


def read_channel(text: str | None) -> str | None:
    """The `channel` parameter: one channel to show, or None for all of them."""
    return check_channel(text.strip().lower()) if text and text.strip() else None


def read_sort(text: str | None) -> str:
    key = (text or "").strip()
    if key.lstrip("-") not in SORTS and key:
        raise BadParameter(
            f"sort: {key!r} is not a column; use one of {', '.join(SORTS)} (- for descending).", parameter="sort"
        )
    return key


def sorted_rows(comparison: Comparison, sort: str) -> list[Measures]:
    key = SORTS.get(sort.lstrip("-"))
    return sorted(comparison.rows, key=key, reverse=sort.startswith("-")) if key else comparison.rows


def estimate_dict(estimate: Estimate, *, digits: int = 6) -> dict:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, digits)

    return {"value": rounded(estimate.value), "low": rounded(estimate.low), "high": rounded(estimate.high)}


def measures_dict(m: Measures, *, channel: str | None = None) -> dict:
    return {
        "segment": m.segment.slug if m.segment else None,
        "name": m.name,
        "members_start": m.members_start,
        "members_end": m.members_end,
        "growth": m.growth,
        "growth_rate": None if m.growth_rate is None else round(m.growth_rate, 6),
        "avg_members": round(m.avg_members, 3),
        "members_during": m.members_during,
        "engaged": m.engaged,
        "engagement_rate": estimate_dict(m.engagement),
        "opens_per_member": None if m.opens_per_member is None else round(m.opens_per_member, 4),
        "clicks_per_member": None if m.clicks_per_member is None else round(m.clicks_per_member, 4),
        "converted": m.converted,
        "conversion_rate": estimate_dict(m.conversion),
        "revenue": str(m.revenue),
        "revenue_per_contact": estimate_dict(m.revenue_per_contact, digits=2),
        "won_deals": m.won_deals,
        "purchases": m.purchases,
        "pipeline_created": str(m.pipeline_created),
        "stage_moves": m.stage_moves,
        "joins": m.joins,
        "leaves": m.leaves,
        "channels": {
            name: {
                "responders": r.responders,
                "activities": r.activities,
                "converted": r.converted,
                "response_rate": estimate_dict(r.rate),
                "flag": r.flag or None,
            }
            for name, r in sorted(m.channels.items(), key=lambda item: list(CHANNELS).index(item[0]))
            if channel in (None, name)
        },
        "flags": m.flags,
        "verdict": m.verdict or None,
    }


def comparison_dict(comparison: Comparison, *, sort: str = "", channel: str | None = None) -> dict:
    period = comparison.period
    return {
        "period": {"label": period.label, "first": period.first.isoformat(), "last": period.last.isoformat()},
        "stage": comparison.stage,
        "baseline": measures_dict(comparison.baseline, channel=channel),
        "segments": [measures_dict(m, channel=channel) for m in sorted_rows(comparison, sort)],
    }


CSV_HEADER = [
    "segment",
    "name",
    "period",
    "members_start",
    "members_end",
    "growth",
    "avg_members",
    "members_during",
    "engaged",
    "engagement_rate",
    "engagement_low",
    "engagement_high",
    "stage",
    "converted",
    "conversion_rate",
    "conversion_low",
    "conversion_high",
    "revenue",
    "revenue_per_contact",
    "revenue_per_contact_low",
    "revenue_per_contact_high",
    "flags",
    "verdict",
]


def _cells(estimate: Estimate, digits: int = 6) -> list:
    return ["" if v is None else round(v, digits) for v in (estimate.value, estimate.low, estimate.high)]


def comparison_csv_rows(comparison: Comparison, *, sort: str = "") -> list[list]:
    rows: list[list] = [CSV_HEADER]
    for m in [comparison.baseline, *sorted_rows(comparison, sort)]:
        rows.append(
            [
                m.segment.slug if m.segment else "",
                m.name,
                comparison.period.label,
                m.members_start,
                m.members_end,
                m.growth,
                round(m.avg_members, 3),
                m.members_during,
                m.engaged,
                *_cells(m.engagement),
                comparison.stage,
                m.converted,
                *_cells(m.conversion),
                m.revenue,
                *_cells(m.revenue_per_contact, 2),
                " ".join(f"{name}:{mark}" for name, mark in sorted(m.flags.items())),
                m.verdict,
            ]
        )
    return rows
