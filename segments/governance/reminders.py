"""Review reminders and escalation (issue 17 item 4), run daily by django-q2 (crmseg_site/schedules.py).

For every review coming due (within GOVERNANCE_REMIND_AHEAD_DAYS), due or overdue, the segment's
steward (its owner, or the backup owner while the owner is inactive) gets one in-app notification
and one e-mail for that review period; a review overdue by more than
GOVERNANCE_ESCALATE_AFTER_DAYS escalates, once, to the backup owner and the Operations group.

Exactly once, however many workers run it at the same moment: a notice is a ReviewReminder row,
unique per segment, kind, due date, stage and recipient, inserted with conflicts ignored; its
e-mail is claimed with a conditional UPDATE (a worker sends only what its own claim took) and
marked sent afterwards. A claim left by a worker that died is taken over after CLAIM_LEASE.
A fixed number of queries whatever the number of segments.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypeGuard

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from contacts.roles import OPERATIONS
from segments.models import ReminderStage, ReviewKind, ReviewReminder, Segment, SegmentStatus

from .cadence import schedules

CLAIM_LEASE = timedelta(hours=1)
NO_ADDRESS = "no address"  # the recipient has no e-mail address: in-app only
SCHEDULE_NAME = "governance: review reminders"


@dataclass(frozen=True)
class Sent:
    notices: int  # reminders and escalations that apply today (new or already recorded)
    emailed: int  # e-mails this run sent

    def as_dict(self) -> dict:
        return {"notices": self.notices, "emailed": self.emailed}


def _active(user: User | None) -> TypeGuard[User]:
    return user is not None and user.is_active


def steward(segment: Segment) -> User | None:
    """Who is reminded: the owner, or the backup owner while the owner is missing or inactive."""
    if _active(segment.owner):
        return segment.owner
    return segment.backup_owner if _active(segment.backup_owner) else None


def _when(due_on: date, today: date) -> str:
    if today < due_on:
        return f"is due on {due_on:%-d %b %Y}"
    if today == due_on:
        return "is due today"
    return f"was due on {due_on:%-d %b %Y} ({(today - due_on).days} days overdue)"


def notices(*, today: date) -> list[ReviewReminder]:
    """The reminders and escalations that apply today (unsaved), for every segment not archived."""
    segments = list(
        Segment.objects.exclude(status=SegmentStatus.ARCHIVED).select_related("owner", "backup_owner").order_by("pk")
    )
    operations = list(get_user_model().objects.filter(groups__name=OPERATIONS, is_active=True, is_staff=True))
    ahead, escalate_after = settings.GOVERNANCE_REMIND_AHEAD_DAYS, settings.GOVERNANCE_ESCALATE_AFTER_DAYS
    found: list[ReviewReminder] = []
    due_by_segment = schedules(segments)
    for segment in segments:
        for kind, due in due_by_segment[segment.pk].items():
            due_on = due.due
            if due_on is None or due.state(today, ahead_days=ahead) not in ("coming", "due", "overdue"):
                continue
            label = ReviewKind(kind).label.lower()  # "metrics review"
            person = steward(segment)
            if person is not None:
                message = f"The {label} of {segment.name} {_when(due_on, today)}."
                found.append(_notice(segment, due.kind, due_on, ReminderStage.REMIND, person, message))
            if due.overdue_days(today) > escalate_after:
                owner = segment.owner.get_username() if segment.owner else "no owner"
                message = f"Escalated: the {label} of {segment.name} {_when(due_on, today)}; owner: {owner}."
                backup = [segment.backup_owner] if _active(segment.backup_owner) else []
                for user in {u.pk: u for u in [*backup, *operations] if u.pk != segment.owner_id}.values():
                    found.append(_notice(segment, due.kind, due_on, ReminderStage.ESCALATE, user, message))
    return found


def _notice(segment: Segment, kind: str, due_on: date, stage: str, recipient: User, message: str) -> ReviewReminder:
    return ReviewReminder(
        segment=segment, kind=kind, due=due_on, stage=stage, recipient=recipient, message=message[:500]
    )


def send_review_reminders(*, now: datetime | None = None) -> dict:
    """Record today's notices (each once) and send the e-mails nobody has sent yet."""
    now = now or timezone.now()
    found = notices(today=timezone.localdate(now))
    ReviewReminder.objects.bulk_create(found, ignore_conflicts=True, batch_size=1000)
    return Sent(notices=len(found), emailed=_send_claimed(now=now)).as_dict()


def _send_claimed(*, now: datetime) -> int:
    token = uuid.uuid4().hex
    unsent = ReviewReminder.objects.filter(emailed_at=None).exclude(email_claim=NO_ADDRESS)
    claimable = Q(email_claimed_at=None) | Q(email_claimed_at__lt=now - CLAIM_LEASE)
    # Conditions on the row itself, no join: another worker's UPDATE of the same rows waits for
    # this one to commit, checks them again and finds them claimed.
    if not unsent.filter(claimable).update(email_claim=token, email_claimed_at=now):
        return 0
    sent, no_address = [], []
    for notice in ReviewReminder.objects.filter(email_claim=token, emailed_at=None).select_related("recipient"):
        if not notice.recipient.email:
            no_address.append(notice.pk)
            continue
        send_mail(
            subject=f"[crmseg] {notice.message}",
            message=f"{notice.message}\n\nRecord the review in the admin: {review_link(notice)}",
            from_email=None,
            recipient_list=[notice.recipient.email],
        )
        sent.append(notice.pk)
    ReviewReminder.objects.filter(pk__in=sent).update(emailed_at=timezone.now())
    ReviewReminder.objects.filter(pk__in=no_address).update(email_claim=NO_ADDRESS)
    return len(sent)


def review_link(notice: ReviewReminder) -> str:
    query = urlencode({"segment": str(notice.segment_id), "kind": notice.kind})
    return reverse("admin:segments_review_add") + "?" + query
