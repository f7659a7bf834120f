"""Who an activation may reach: one set-based queryset every exporter reads.

audience = segment members
           − members of the activation's suppression segments
           − members of every global suppression segment that is not archived (paused ones still apply)
           − do-not-contact, bounced and unsubscribed contacts
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from activation.models import Activation
from contacts.models import Contact, ContactQuerySet
from segments.models import SUPPRESSION_KINDS, Membership, Segment, SegmentStatus


def suppressing_segments(activation: Activation) -> QuerySet[Segment]:
    global_ones = Q(kind__in=SUPPRESSION_KINDS, is_global=True) & ~Q(status=SegmentStatus.ARCHIVED)
    chosen = Q(pk__in=activation.suppression_segments.values("pk"))
    return Segment.objects.filter(global_ones | chosen)


def members(activation: Activation) -> ContactQuerySet:
    in_segment = Membership.objects.filter(segment_id=activation.segment_id, contact_id=OuterRef("pk"))
    return Contact.objects.filter(Exists(in_segment))


def audience(activation: Activation) -> QuerySet[Contact]:
    suppressed = Membership.objects.filter(segment__in=suppressing_segments(activation), contact_id=OuterRef("pk"))
    return members(activation).reachable().filter(~Exists(suppressed))
