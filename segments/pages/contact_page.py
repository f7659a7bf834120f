"""What a Sales rep sees about one contact, gathered in a fixed number of queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from django.db.models import Exists, OuterRef, QuerySet, Subquery

from contacts.models import Activity, ActivityKind, Contact, Deal, DealStage, LifecycleChange
from predictions.explain import contact_scores
from segments.explaining import explain_segments
from segments.models import ChangeKind, Membership, MembershipChange, Segment
from segments.rules.explainer import Explanation
from segments.rules.registry import get_fields
from segments.rules.validation import InvalidRule

from .paging import Page, fetch_page

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class _AddedBy(TypedDict):
    added_by: str | None


ACTIVITY_PAGE_SIZE = 20


@dataclass(frozen=True)
class MembershipRow:
    """One of the contact's memberships as the page shows it."""

    segment: Segment
    joined_at: datetime
    added_by: str | None  # who added it by hand (its latest join's user)
    why: list[str]  # the conditions that hold (rule-based segments)

    @property
    def segment_id(self) -> int:
        return self.segment.pk


@dataclass(frozen=True)
class SuppressionFlag:
    segment_name: str
    reason: str
    is_global: bool


def open_support_tickets(contact: Contact) -> QuerySet[Activity]:
    """Tickets opened with no support_ticket_closed for the contact at or after the opening.

    Activities carry no ticket id, so a close settles every ticket opened before it.
    """
    later_close = Activity.objects.filter(
        contact_id=OuterRef("contact_id"),
        kind=ActivityKind.SUPPORT_TICKET_CLOSED,
        occurred_at__gte=OuterRef("occurred_at"),
    )
    return Activity.objects.filter(contact=contact, kind=ActivityKind.SUPPORT_TICKET_OPENED).filter(
        ~Exists(later_close)
    )


def memberships(contact: Contact) -> list[WithAnnotations[Membership, _AddedBy]]:
    """The contact's memberships, each with `added_by`: who added it by hand (its latest join's user)."""
    joined_by = MembershipChange.objects.filter(
        segment_id=OuterRef("segment_id"), contact_id=OuterRef("contact_id"), kind=ChangeKind.JOIN
    ).order_by("-changed_at", "-id")
    return list(
        Membership.objects.filter(contact=contact)
        .select_related("segment")
        .annotate(added_by=Subquery(joined_by.values("changed_by__username")[:1]))
        .order_by("segment__name", "segment_id")
    )


def explain_memberships(contact: Contact, member_of: Sequence[Membership], *, now: datetime) -> dict[int, list[str]]:
    """The conditions that hold, per rule-based membership, from one explainer pass.

    The segments' rules are explained together (explain_segments), so the contact, its
    activities and memberships are read once however many segments it is in, each segment with
    the percent thresholds its refreshes used. A membership whose rule no longer holds (data
    changed since the last refresh) says so.
    """
    ruled = [m for m in member_of if m.segment.is_rule_based and m.segment.rule]
    if not ruled:
        return {}
    fields = get_fields()
    explained = explain_segments([m.segment for m in ruled], contact, now=now, fields=fields)
    return {m.segment_id: _why(explanation) for m, explanation in zip(ruled, explained, strict=True)}


def _why(explanation: Explanation | InvalidRule) -> list[str]:
    if isinstance(explanation, InvalidRule):
        return [f"The rule is invalid: {explanation}"]
    if explanation.result:
        return explanation.reasons()
    return ["No longer matches (the next refresh will remove the contact)"]


def suppression_flags(member_of: list[MembershipRow]) -> list[SuppressionFlag]:
    """Plain-language flags for every suppression segment the contact is in."""
    return [
        SuppressionFlag(
            segment_name=m.segment.name,
            reason=m.segment.description.strip().rstrip(".") or "; ".join(m.why) or "member of this suppression list",
            is_global=m.segment.is_global,
        )
        for m in member_of
        if m.segment.is_suppression
    ]


def activity_page(contact: Contact, *, number: int) -> Page:
    timeline = Activity.objects.filter(contact=contact).order_by("-occurred_at", "-id")
    return fetch_page(timeline, number=number, size=ACTIVITY_PAGE_SIZE)


def contact_facts(contact: Contact, *, activity_page_number: int, now: datetime) -> dict:
    found = memberships(contact)
    why = explain_memberships(contact, found, now=now)
    member_of = [MembershipRow(m.segment, m.joined_at, m.added_by, why.get(m.segment_id, [])) for m in found]
    open_deals = list(Deal.objects.filter(contact=contact, stage=DealStage.OPEN).order_by("-created_at"))
    return {
        "stage_history": list(LifecycleChange.objects.filter(contact=contact)[:8]),
        "open_deals": open_deals,
        "open_deals_total": sum(deal.amount for deal in open_deals),
        "open_tickets": list(open_support_tickets(contact).order_by("-occurred_at")),
        "memberships": member_of,
        "suppressions": suppression_flags(member_of),
        "activities": activity_page(contact, number=activity_page_number),
        "propensities": contact_scores(contact.pk),
        "now": now,
    }
