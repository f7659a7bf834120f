"""Erasure notices: the webhooks an automation posted a contact to are told it was erased (issue 24).

An automation's webhook action POSTs the id, email and names of the contacts that joined or left a
segment (activation/automations.py, `call_webhook`): the receiver holds personal data crmseg sent.
When such a contact is erased, `queue_erasure_notices` (an eraser, run inside the erasure's
transaction) records one `ErasureNotice` per webhook destination that received it, and queues the
delivery for after the commit. A destination counts as having received the contact when one of its
automation runs recorded the webhook action as done, or is running or failed (the call may have
gone out before the failure): telling a receiver that never got the contact costs nothing.

The notice names the contact by id only: every payload the receiver got carried that id, so it can
find the person by it, and repeating the email would send personal data to a third party after
the person asked for it to be erased. The body, signed like every delivery (activation/webhooks.py):

    {"source": "erasure", "event": "contact.erased", "contacts": [{"id": 42}]}

Notices go out in the destination's batch size, with an idempotency key made from their ids, so a
repeat after a crash is recognisable. Delivery is retried like automation runs: a failure waits 1,
2, 4, 8 minutes (`next_attempt_at`), at most MAX_ATTEMPTS tries, picked up by the every-minute
automation job; a worker killed mid-delivery leaves the notices claimable after the claim lease.
The unique (destination, contact) pair and the `sent` status make each notice go out once.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from activation.automation_models import (
    MAX_ATTEMPTS,
    ActionKind,
    AutomationAction,
    AutomationRun,
    AutomationRunStatus,
    ErasureNotice,
    ErasureNoticeStatus,
    claim_lease,
    next_attempt_at,
)
from activation.webhooks import WebhookError, post_json
from contacts.erasure import Erasure

logger = logging.getLogger(__name__)

TASK = "activation.erasure_notices.send_erasure_notices"
# A run in these states may have called its webhooks already.
MAY_HAVE_CALLED = (AutomationRunStatus.RUNNING, AutomationRunStatus.FAILED)


def queue_erasure_notices(contact_ids: list[int], erasure: Erasure) -> None:
    """Eraser (contacts.erasure.add_eraser): a notice per webhook destination an automation sent the
    contacts to, delivered after the erasure commits; the count goes to `erasure.webhook_notices`."""
    actions = AutomationAction.objects.filter(kind=ActionKind.WEBHOOK).values_list(
        "pk", "automation_id", "destination_id"
    )
    by_automation: dict[int, list[tuple[int, int]]] = {}
    for action_id, automation_id, destination_id in actions:
        by_automation.setdefault(automation_id, []).append((action_id, destination_id))
    if not by_automation:
        return
    runs = AutomationRun.objects.filter(contact_id__in=contact_ids, automation_id__in=by_automation).filter(
        Q(status__in=MAY_HAVE_CALLED) | ~Q(done_actions=[])
    )
    received: set[tuple[int, int]] = set()
    for contact_id, automation_id, status, done in runs.values_list(
        "contact_id", "automation_id", "status", "done_actions"
    ):
        for action_id, destination_id in by_automation[automation_id]:
            if action_id in done or status in MAY_HAVE_CALLED:
                received.add((destination_id, contact_id))
    ErasureNotice.objects.bulk_create(
        [ErasureNotice(destination_id=destination, contact_id=contact) for destination, contact in sorted(received)]
    )
    erasure.webhook_notices += len(received)
    if received:
        transaction.on_commit(lambda: async_task(TASK, task_name="send erasure notices"))


def send_erasure_notices(*, now: datetime | None = None) -> dict:
    """django-q task (and part of the every-minute automation job): deliver every notice that is due."""
    now = now or timezone.now()
    sent = failed = 0
    while notices := _claim(now=now):
        destination = notices[0].destination
        payload = {"source": "erasure", "event": "contact.erased", "contacts": [{"id": n.contact_id} for n in notices]}
        ids = ",".join(str(n.pk) for n in notices)
        key = "crmseg-erasure-" + hashlib.sha256(ids.encode()).hexdigest()[:32]
        claimed = ErasureNotice.objects.filter(pk__in=[n.pk for n in notices], status=ErasureNoticeStatus.SENDING)
        try:
            post_json(destination, payload, idempotency_key=key)
        except (WebhookError, ValidationError) as exc:
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            logger.warning("Erasure notices %s to %s failed: %s", ids, destination.url, message)
            attempts = max(n.attempts for n in notices)
            claimed.update(
                status=ErasureNoticeStatus.FAILED,
                last_error=message[:5000],
                next_attempt_at=next_attempt_at(attempts, now=now),
            )
            failed += len(notices)
        else:
            claimed.update(status=ErasureNoticeStatus.SENT, sent_at=timezone.now(), last_error="", next_attempt_at=None)
            sent += len(notices)
    return {"sent": sent, "failed": failed}


def _claim(*, now: datetime) -> list[ErasureNotice]:
    """Take the due notices of one destination, at most its batch size, for this worker."""
    due = ErasureNotice.objects.filter(
        Q(status=ErasureNoticeStatus.PENDING)
        | Q(status=ErasureNoticeStatus.FAILED, attempts__lt=MAX_ATTEMPTS, next_attempt_at__lte=now)
        | Q(status=ErasureNoticeStatus.SENDING, claimed_at__lt=now - claim_lease())
    )
    with transaction.atomic():
        first = due.select_for_update(skip_locked=True).order_by("pk").first()
        if first is None:
            return []
        batch_size = first.destination.batch_size
        same = due.filter(destination_id=first.destination_id).select_for_update(skip_locked=True)
        ids = list(same.order_by("pk").values_list("pk", flat=True)[:batch_size])
        notices = ErasureNotice.objects.filter(pk__in=ids)
        notices.update(status=ErasureNoticeStatus.SENDING, claimed_at=now, attempts=F("attempts") + 1)
        return list(notices.select_related("destination").order_by("pk"))
