"""Why members of an export run's segment were held back, cause by cause.

Public: `CAUSES`, `held_back(activation) -> list[dict]`, `with_skipped(causes, skipped) -> list[dict]`.

The causes, in the order they are shown: each suppression segment the activation names (by name),
do-not-contact, each reason an address is unreachable (contacts.hygiene's reachability: bounced
hard or soft, unsubscribed, invalid, disposable, mistyped, role, inactive), each global suppression
segment (by name), and (after delivery) a missing or unusable identifier for the destination. The
audience queryset (activation/audience.py) keeps every one of them out; this counts them, in one
grouped statement over the segment's members. Each member held back counts once, under the first
cause that applies, so the causes before delivery add up to the run's `suppressed_count`: a
contact the global "unreachable" suppression holds back counts under the reason its address is
unreachable, not under the suppression's name, which keeps the members held back for anything else.
"""

from __future__ import annotations

from django.db.models import CharField, Count, Exists, F, OuterRef, Q, Value, When
from django.db.models.expressions import Case

from activation.audience import members, suppressing_segments
from activation.models import Activation
from contacts.hygiene import unreachable_reason
from contacts.models import ADDRESSABLE, Reachability
from segments.models import Membership

CAUSES = {
    "suppression": "Suppression list of this activation",
    "global_suppression": "Global suppression list",
    "do_not_contact": "Do not contact",
    **{reach.value: f"Unreachable: {reach.label}" for reach in Reachability if reach != Reachability.REACHABLE},
    "missing_identifier": "Missing or unusable identifier for the destination",
}
UNREACHABLE = [reach.value for reach in Reachability if reach != Reachability.REACHABLE]


def held_back(activation: Activation) -> list[dict]:
    """Each cause that keeps segment members out of this activation, with how many it keeps out."""
    chosen = set(activation.suppression_segments.values_list("pk", flat=True))
    segments = sorted(suppressing_segments(activation).only("pk", "name"), key=lambda s: (s.pk not in chosen, s.name))
    in_segment = {
        segment.pk: Exists(Membership.objects.filter(segment_id=segment.pk, contact_id=OuterRef("pk")))
        for segment in segments
    }
    own = [segment for segment in segments if segment.pk in chosen]
    global_ones = [segment for segment in segments if segment.pk not in chosen]
    # Held back for its address: by the audience's own check, or by a global suppression list.
    address_held = ~ADDRESSABLE | Q(*[in_segment[s.pk] for s in global_ones], _connector=Q.OR)
    first_cause = Case(
        *[When(in_segment[s.pk], then=Value(f"segment_{s.pk}")) for s in own],
        When(do_not_contact=True, then=Value("do_not_contact")),
        When(address_held & ~Q(reason=Reachability.REACHABLE), then=F("reason")),
        *[When(in_segment[s.pk], then=Value(f"segment_{s.pk}")) for s in global_ones],
        default=None,
        output_field=CharField(),
    )
    found = dict(
        members(activation)
        .alias(reason=unreachable_reason())
        .annotate(cause=first_cause)
        .filter(cause__isnull=False)
        .order_by()
        .values_list("cause")
        .annotate(n=Count("pk"))
    )

    def segment_cause(segment, kind: str) -> dict:
        label = f"{CAUSES[kind]}: {segment.name}"
        return {"cause": kind, "label": label, "segment_id": segment.pk, "count": found.get(f"segment_{segment.pk}", 0)}

    return [
        *[segment_cause(segment, "suppression") for segment in own],
        {"cause": "do_not_contact", "label": CAUSES["do_not_contact"], "count": found.get("do_not_contact", 0)},
        *[{"cause": reach, "label": CAUSES[reach], "count": found.get(reach, 0)} for reach in UNREACHABLE],
        *[segment_cause(segment, "global_suppression") for segment in global_ones],
    ]


def with_skipped(causes: list[dict], skipped: int) -> list[dict]:
    """The causes with the contacts delivery skipped for want of a usable identifier."""
    return [*causes, {"cause": "missing_identifier", "label": CAUSES["missing_identifier"], "count": skipped}]
