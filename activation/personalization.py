"""What a website should show one contact: segments, interests and each active campaign's content.

Interests are the contact's declared interests plus, when metrics have been computed, its top
topics and products of interest from ContactMetrics.

At most four queries whatever the contact: the contact (with its metrics), its memberships with
their segments, the active campaigns, and the variants of the contact's segments. A contact in a
target segment of a running experiment costs two more: its experiments (suppressions applied) and
the record of first exposures (activation/experiments.py). Nothing is
cached, so an edit in the admin shows on the next call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Exists, OuterRef

from activation.campaigns import contents_for
from activation.experiments import assign_contact, running_targets
from contacts.models import Contact, normalize_email
from segments.models import Membership, SegmentStatus


class ContactNotFound(LookupError):
    pass


def personalize(*, contact_id: int | None = None, email: str | None = None) -> dict:
    """Personalisation data for the contact with this id or email (exactly one of the two)."""
    contact = find_contact(contact_id=contact_id, email=email)
    every = list(
        Membership.objects.filter(contact_id=contact["id"])
        .exclude(segment__status=SegmentStatus.ARCHIVED)
        .annotate(tested=Exists(running_targets().filter(segment_id=OuterRef("segment_id"))))
        .select_related("segment")
        .order_by("segment__name")
    )
    memberships = [m for m in every if not m.segment.is_suppression]
    globally_suppressed = any(m.segment.is_suppression and m.segment.is_global for m in every)
    assignments = assign_contact(
        contact,
        [m.segment_id for m in every],
        tested=any(m.tested for m in every),
        globally_suppressed=globally_suppressed,
    )
    segments = [
        {
            "slug": m.segment.slug,
            "name": m.segment.name,
            "category": m.segment.category,
            "joined_at": m.joined_at.isoformat(),
        }
        for m in memberships
    ]
    live_segments = {m.segment_id: m.segment for m in memberships}
    return {
        "contact": {"id": contact["id"], "email": contact["email"], "lifecycle_stage": contact["lifecycle_stage"]},
        "segments": segments,
        "interests": list(contact["interests"]),
        "top_topics": contact["metrics__top_topics"] or [],
        "products_of_interest": contact["metrics__products"] or [],
        "engagement_level": contact["metrics__engagement_level"] or "",
        "campaigns": [content.as_dict() for content in contents_for(live_segments, assignments=assignments)],
    }


def find_contact(*, contact_id: int | None, email: str | None) -> Mapping[str, Any]:
    """The contact's fields personalisation reads, metrics included (None when not computed yet)."""
    if (contact_id is None) == (email is None):
        raise ValueError("Give exactly one of contact_id or email.")
    contacts = Contact.objects.values(
        "id",
        "email",
        "lifecycle_stage",
        "interests",
        "metrics__top_topics",
        "metrics__products",
        "metrics__engagement_level",
        "email_status",
        "do_not_contact",
    )
    if contact_id is not None:
        found, what = contacts.filter(pk=contact_id), f"id {contact_id}"
    else:
        normalized = normalize_email(email or "")
        found, what = contacts.filter(email=normalized), f"email {normalized!r}"
    contact = found.first()
    if contact is None:
        raise ContactNotFound(f"No contact with {what}.")
    return contact
