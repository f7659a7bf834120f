"""Why members of an export run's segment were held back, cause by cause.

Public: `CAUSES`, `held_back(activation) -> list[dict]`, `with_skipped(causes, skipped) -> list[dict]`.

The causes, in the order they are shown: each suppression segment the activation names, each global
suppression segment (both by name), do-not-contact, bounced, unsubscribed, and (after delivery) a
missing or unusable identifier for the destination. The audience queryset (activation/audience.py)
keeps every one of them out; this counts them, all in one statement over the segment's members. A
member held back for two causes (a bounced contact on the opt-out list) counts under both, so the
causes can add up to more than the run's `suppressed_count`.
"""

from __future__ import annotations

from django.db.models import Count, Exists, OuterRef, Q

from activation.audience import members, suppressing_segments
from activation.models import Activation
from contacts.models import EmailStatus
from segments.models import Membership

CAUSES = {
    "suppression": "Suppression list of this activation",
    "global_suppression": "Global suppression list",
    "do_not_contact": "Do not contact",
    "bounced": "E-mail bounced",
    "unsubscribed": "Unsubscribed",
    "missing_identifier": "Missing or unusable identifier for the destination",
}
_FLAGS = {
    "do_not_contact": Q(do_not_contact=True),
    "bounced": Q(email_status=EmailStatus.BOUNCED),
    "unsubscribed": Q(email_status=EmailStatus.UNSUBSCRIBED),
}


def held_back(activation: Activation) -> list[dict]:
    """Each cause that keeps segment members out of this activation, with how many it keeps out."""
    chosen = set(activation.suppression_segments.values_list("pk", flat=True))
    segments = sorted(suppressing_segments(activation).only("pk", "name"), key=lambda s: (s.pk not in chosen, s.name))
    counts = {
        f"segment_{segment.pk}": Count(
            "pk", filter=Q(Exists(Membership.objects.filter(segment_id=segment.pk, contact_id=OuterRef("pk"))))
        )
        for segment in segments
    }
    counts |= {cause: Count("pk", filter=condition) for cause, condition in _FLAGS.items()}
    found = members(activation).order_by().aggregate(**counts)
    causes = [
        {
            "cause": "suppression" if segment.pk in chosen else "global_suppression",
            "label": f"{CAUSES['suppression' if segment.pk in chosen else 'global_suppression']}: {segment.name}",
            "segment_id": segment.pk,
            "count": found[f"segment_{segment.pk}"],
        }
        for segment in segments
    ]
    return causes + [{"cause": cause, "label": CAUSES[cause], "count": found[cause]} for cause in _FLAGS]


def with_skipped(causes: list[dict], skipped: int) -> list[dict]:
    """The causes with the contacts delivery skipped for want of a usable identifier."""
    return [*causes, {"cause": "missing_identifier", "label": CAUSES["missing_identifier"], "count": skipped}]
