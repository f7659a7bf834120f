"""Small fixed data for the segment analytics tests, with every figure worked out by hand.

Q3 2026 (1 July – 30 September, UTC) for the segment "Analysed" and six contacts created on
1 January 2026:

- A: member since 1 May (no history: counts from joined_at); open 2 Jul, click 3 Jul, purchase
  5 Aug (50.00), deal won 10 Sep (1,000.00), moves opportunity → customer on 10 Sep.
- B: joins 10 Jul 12:00, leaves 1 Aug 00:00, rejoins 1 Sep 09:00. Visit 20 Jul (member), download
  10 Aug (not a member), form 2 Sep (member); deal won 15 Aug (not a member, 300.00); deal
  created 5 Sep (member, open, 500.00).
- C: joins 15 Aug 10:00 by hand, leaves 20 Aug 10:00. Open at exactly the join instant (counts),
  click at exactly the leave instant (does not).
- D: never a member; open 1 Jul.
- E: in the segment before history began; its first change is a leave on 5 Jul 00:00. Open
  4 Jul 23:59:59 (counts), open 5 Jul 00:00 (does not).
- F: member since 1 Jun (joined, with history); purchase 20 Jul (100.00). Deleted in some tests.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from contacts.models import Activity, Contact, Deal, LifecycleChange
from segments.models import Membership, MembershipChange, Segment
from tests.factories import ContactFactory, SegmentFactory


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


CREATED = at(1, 1)


@dataclass
class World:
    segment: Segment
    a: Contact
    b: Contact
    c: Contact
    d: Contact
    e: Contact
    f: Contact


def change(segment: Segment, contact: Contact, kind: str, when: datetime, reason: str = "rule") -> None:
    MembershipChange.objects.create(segment=segment, contact=contact, kind=kind, reason=reason, changed_at=when)


def activity(contact: Contact, kind: str, when: datetime, value: str | None = None, campaign: str = "") -> None:
    Activity.objects.create(
        contact=contact, kind=kind, occurred_at=when, value=Decimal(value) if value else None, campaign=campaign
    )


def build_world() -> World:
    segment = SegmentFactory(name="Analysed", slug="analysed", kind="static", rule=None)
    a, b, c, d, e, f = (ContactFactory(created_at=CREATED, lifecycle_changed_at=CREATED) for _ in range(6))
    Membership.objects.create(segment=segment, contact=a, joined_at=at(5, 1))
    change(segment, b, "join", at(7, 10, 12))
    change(segment, b, "leave", at(8, 1))
    change(segment, b, "join", at(9, 1, 9))
    Membership.objects.create(segment=segment, contact=b, joined_at=at(9, 1, 9))
    change(segment, c, "join", at(8, 15, 10), reason="manual")
    change(segment, c, "leave", at(8, 20, 10))
    change(segment, e, "leave", at(7, 5))
    change(segment, f, "join", at(6, 1))
    Membership.objects.create(segment=segment, contact=f, joined_at=at(6, 1))

    activity(a, "email_open", at(7, 2, 8), campaign="summer-launch")
    activity(a, "email_click", at(7, 3, 8), campaign="summer-launch")
    activity(a, "purchase", at(8, 5, 14), value="50.00")
    Deal.objects.create(
        name="A won", contact=a, amount=Decimal("1000.00"), stage="won", created_at=at(6, 1), closed_at=at(9, 10, 15)
    )
    LifecycleChange.objects.create(contact=a, from_stage="opportunity", to_stage="customer", changed_at=at(9, 10, 15))
    activity(b, "site_visit", at(7, 20, 9))
    activity(b, "content_download", at(8, 10, 9))
    activity(b, "form_submit", at(9, 2, 9), campaign="summer-launch")
    Deal.objects.create(
        name="B won", contact=b, amount=Decimal("300.00"), stage="won", created_at=at(6, 1), closed_at=at(8, 15, 12)
    )
    Deal.objects.create(name="B new", contact=b, amount=Decimal("500.00"), stage="open", created_at=at(9, 5, 12))
    activity(c, "email_open", at(8, 15, 10), campaign="summer-launch")
    activity(c, "email_click", at(8, 20, 10))
    activity(d, "email_open", at(7, 1, 10))
    activity(e, "email_open", at(7, 4, 23, 59, 59))
    activity(e, "email_open", at(7, 5))
    activity(f, "purchase", at(7, 20, 11), value="100.00")
    return World(segment, a, b, c, d, e, f)
