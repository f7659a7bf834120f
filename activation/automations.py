"""Run automations over new MembershipChange rows, exactly once per (automation, change).

process_pending() is the whole cycle and is safe to call from any number of workers at once:

1. discover: one INSERT … SELECT … ON CONFLICT DO NOTHING adds a pending AutomationRun for every
   new trigger change of every enabled automation (the unique pair makes it idempotent);
2. claim: a worker takes a batch with a conditional UPDATE that stamps its token on rows still
   claimable (PostgreSQL first picks them with FOR UPDATE SKIP LOCKED so workers split the queue),
   and renews their heartbeat while it works on them; runs whose heartbeat is older than
   AUTOMATION_CLAIM_LEASE_SECONDS lost their worker (killed) and are claimed again by another, the
   reason kept in their last error;
3. process: per automation, suppressed contacts are skipped, then each action is applied to the
   whole batch set-based, in a transaction that also records the action on the runs, checked
   against the token. A retry skips the actions already recorded, so no write here is applied
   twice. Email and webhook calls go out just before that transaction (never holding it open): if
   the process dies between the call and the commit, the retry repeats the call; webhooks carry
   an idempotency key for exactly that case.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django_q.tasks import async_task

from activation.automation_models import (
    ActionKind,
    Automation,
    AutomationAction,
    AutomationRun,
    AutomationRunStatus,
    Enrolment,
    Notification,
    next_attempt_at,
)
from activation.erasure_notices import send_erasure_notices
from activation.webhooks import post_json
from contacts import writes
from contacts.models import Contact
from crmseg_site.liveness import heartbeat, worker_name
from segments.models import SUPPRESSION_KINDS, ChangeKind, Membership, MembershipChange, Segment, SegmentStatus

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
# Changes older than this are not looked at any more: it bounds the discovery scan.
DISCOVERY_WINDOW = timedelta(days=7)
SCHEDULE_NAME = "activation: process automations"
TASK = "activation.automations.process_automations"


class LostClaim(Exception):
    """Another worker took over these runs (our lease expired); our changes are rolled back."""


@dataclass
class Outcome:
    discovered: int = 0
    claimed: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def process_automations() -> dict:
    """django-q task, scheduled every minute and enqueued after refreshes; it also sends the erasure
    notices that are due (their retries ride on this schedule)."""
    outcome = process_pending()
    notices = send_erasure_notices()
    return {**{k: v for k, v in vars(outcome).items() if k != "errors"}, "erasure_notices": notices}


def enqueue_processing() -> None:
    """Queue process_automations once the current transaction commits (e.g. after a refresh)."""
    transaction.on_commit(lambda: async_task(TASK, task_name="process automations"))


def memberships_changed(segment_ids: list[int]) -> None:
    """segments.events listener (called after commit): process the new changes soon."""
    if Automation.objects.enabled().filter(trigger_segment_id__in=segment_ids).exists():
        async_task(TASK, task_name="process automations")


def process_pending(*, batch_size: int = BATCH_SIZE, max_batches: int = 50, now: datetime | None = None) -> Outcome:
    """Discover new trigger changes and work through claimable runs until none are left."""
    outcome = Outcome(discovered=discover_runs(now=now))
    for _ in range(max_batches):
        runs = claim_runs(limit=batch_size, now=now)
        if not runs:
            break
        outcome.claimed += len(runs)
        token = runs[0].claim_token

        def renew(at: datetime, token: str = token) -> None:
            renew_claim(token, now=at)

        with heartbeat(renew):
            process_claimed(runs, outcome=outcome)
    return outcome


def discover_runs(*, now: datetime | None = None) -> int:
    """Add a pending run for each trigger change not seen yet, in one statement; return how many."""
    now = now or timezone.now()
    run = AutomationRun._meta
    automation = Automation._meta.db_table
    change = MembershipChange._meta.db_table
    sql = f"""
        INSERT INTO {run.db_table}
            (automation_id, change_id, contact_id, status, attempts, done_actions,
             claim_token, claimed_by, last_error, skip_reason, created_at)
        SELECT a.id, c.id, c.contact_id, %s, 0, %s, '', '', '', '', %s
        FROM {automation} a
        JOIN {change} c
          ON c.segment_id = a.trigger_segment_id AND c.kind = a.trigger AND c.id > a.starts_after_change
        WHERE a.enabled = %s AND c.changed_at >= %s
          AND NOT EXISTS (SELECT 1 FROM {run.db_table} r WHERE r.automation_id = a.id AND r.change_id = c.id)
        ON CONFLICT DO NOTHING
    """
    done_actions = run.get_field("done_actions").get_db_prep_value([], connection)
    created_at = connection.ops.adapt_datetimefield_value(now)
    window_start = connection.ops.adapt_datetimefield_value(now - DISCOVERY_WINDOW)
    with connection.cursor() as cursor:
        cursor.execute(sql, [AutomationRunStatus.PENDING, done_actions, created_at, True, window_start])
        return max(cursor.rowcount, 0)


def claim_runs(*, limit: int, now: datetime | None = None) -> list[AutomationRun]:
    """Take up to `limit` claimable runs for this worker; rows another worker holds are left alone."""
    now = now or timezone.now()
    token = uuid.uuid4().hex
    with transaction.atomic():
        candidates = (
            AutomationRun.objects.claimable(now=now)
            .select_for_update(skip_locked=True)
            .order_by("id")
            .values_list("id", "status", "claimed_by", "heartbeat_at")[:limit]
        )
        rows = list(candidates)
        if not rows:
            return []
        # Conditional update: a row another worker claimed in the meantime no longer matches.
        AutomationRun.objects.claimable(now=now).filter(pk__in=[row[0] for row in rows]).update(
            status=AutomationRunStatus.RUNNING,
            claim_token=token,
            claimed_at=now,
            claimed_by=worker_name(),
            heartbeat_at=now,
            attempts=F("attempts") + 1,
        )
        _note_lost_claims([row for row in rows if row[1] == AutomationRunStatus.RUNNING], token=token)
    return list(AutomationRun.objects.filter(claim_token=token, status=AutomationRunStatus.RUNNING).order_by("id"))


def _note_lost_claims(rows: list[tuple], *, token: str) -> None:
    """Runs taken over from a worker that stopped renewing its claim say so in their last error."""
    by_worker: dict[tuple[str, datetime | None], list[int]] = defaultdict(list)
    for pk, _, worker, heartbeat_at in rows:
        by_worker[worker, heartbeat_at].append(pk)
    for (worker, heartbeat_at), ids in by_worker.items():
        since = f"{timezone.localtime(heartbeat_at):%Y-%m-%d %H:%M:%S}" if heartbeat_at else "ever"
        AutomationRun.objects.filter(pk__in=ids, claim_token=token).update(
            last_error=f"Claimed again: the worker {worker or 'that claimed it'} stopped (no heartbeat since {since})."
        )


def renew_claim(token: str, *, now: datetime) -> None:
    """Heartbeat of the runs this worker holds (from the heartbeat thread; rows a transaction holds are
    skipped, never waited for: they are being written by this worker and renewed on the next beat)."""
    with transaction.atomic():
        held_now = AutomationRun.objects.filter(claim_token=token, status=AutomationRunStatus.RUNNING)
        ids = list(held_now.select_for_update(skip_locked=True, no_key=True).values_list("pk", flat=True))
        AutomationRun.objects.filter(pk__in=ids).update(heartbeat_at=now)


def process_claimed(runs: Sequence[AutomationRun], *, outcome: Outcome) -> None:
    """Process claimed runs in groups that share an automation and the actions already done."""
    automations = {
        a.pk: a
        for a in Automation.objects.filter(pk__in={r.automation_id for r in runs})
        .select_related("trigger_segment")
        .prefetch_related("actions__sequence", "suppression_segments")
    }
    groups: dict[tuple[int, tuple[int, ...]], list[AutomationRun]] = defaultdict(list)
    for run in runs:
        groups[run.automation_id, tuple(run.done_actions)].append(run)
    for (automation_id, _), group in groups.items():
        process_batch(automations[automation_id], group, outcome=outcome)


def process_batch(automation: Automation, runs: list[AutomationRun], *, outcome: Outcome) -> None:
    token = runs[0].claim_token
    done = list(runs[0].done_actions)
    where = "suppression check"
    try:
        runs = skip_suppressed(automation, runs, outcome=outcome)
        for action in automation.actions.all():
            if action.pk in done or not runs:
                continue
            where = f"action #{action.position} ({action})"
            if action.kind in DELIVER:
                DELIVER[action.kind](automation, action, runs)
            with transaction.atomic():
                if action.kind in WRITE:
                    WRITE[action.kind](automation, action, runs)
                done.append(action.pk)
                record_progress(runs, token=token, done_actions=done)
        where = "finishing"
        finish(runs, token=token)
        outcome.done += len(runs)
    except Exception as exc:
        message = f"{where}: {type(exc).__name__}: {exc}"
        logger.exception("automation %s failed on %d runs at %s", automation.pk, len(runs), where)
        fail(runs, token=token, error=message)
        outcome.failed += len(runs)
        outcome.errors.append(message)


def skip_suppressed(automation: Automation, runs: list[AutomationRun], *, outcome: Outcome) -> list[AutomationRun]:
    """Mark runs of contacts in a global or the automation's own suppression segment as skipped."""
    token = runs[0].claim_token
    # As for activations: global suppressions apply unless archived (paused ones still count).
    global_ones = Q(kind__in=SUPPRESSION_KINDS, is_global=True) & ~Q(status=SegmentStatus.ARCHIVED)
    chosen = Q(pk__in=[s.pk for s in automation.suppression_segments.all()])
    suppressions = Segment.objects.filter(global_ones | chosen)
    hits = Membership.objects.filter(contact_id__in={r.contact_id for r in runs}, segment__in=suppressions).values_list(
        "contact_id", "segment__name"
    )
    suppressed_by: dict[int, str] = {}
    for contact_id, segment_name in hits:
        suppressed_by.setdefault(contact_id, segment_name)
    skipped = [r for r in runs if r.contact_id in suppressed_by]
    for segment_name in set(suppressed_by.values()):
        held([r for r in skipped if suppressed_by[r.contact_id] == segment_name], token=token).update(
            status=AutomationRunStatus.SKIPPED,
            skip_reason=f"in suppression segment {segment_name!r}",
            finished_at=timezone.now(),
        )
    outcome.skipped += len(skipped)
    return [r for r in runs if r.contact_id not in suppressed_by]


def held(runs: list[AutomationRun], *, token: str) -> QuerySet[AutomationRun]:
    """These runs, as long as this worker (token) still holds them."""
    return AutomationRun.objects.filter(
        pk__in=[r.pk for r in runs], claim_token=token, status=AutomationRunStatus.RUNNING
    )


def record_progress(runs: list[AutomationRun], *, token: str, done_actions: list[int]) -> None:
    updated = held(runs, token=token).update(done_actions=done_actions)
    if updated != len(runs):
        raise LostClaim(f"{len(runs) - updated} of {len(runs)} runs were claimed by another worker")


def finish(runs: list[AutomationRun], *, token: str) -> None:
    held(runs, token=token).update(
        status=AutomationRunStatus.DONE, finished_at=timezone.now(), last_error="", next_attempt_at=None
    )


def fail(runs: list[AutomationRun], *, token: str, error: str) -> None:
    """Record the error; retry later with exponential backoff until MAX_ATTEMPTS is reached."""
    now = timezone.now()
    next_attempt = next_attempt_at(max(r.attempts for r in runs), now=now)
    held(runs, token=token).update(
        status=AutomationRunStatus.FAILED, last_error=error[:5000], next_attempt_at=next_attempt, finished_at=now
    )


def adjust_score(automation: Automation, action: AutomationAction, runs: list[AutomationRun]) -> None:
    """lead_score += delta once per run; a contact with two runs in the batch moves twice.

    Written through contacts.writes, so segments reading lead_score follow after commit."""
    by_times: dict[int, list[int]] = defaultdict(list)
    for contact_id, times in Counter(r.contact_id for r in runs).items():
        by_times[times].append(contact_id)
    for times, contact_ids in by_times.items():
        contacts = Contact.objects.filter(pk__in=contact_ids)
        writes.update(contacts, lead_score=F("lead_score") + (action.score_delta or 0) * times)


def enrol(automation: Automation, action: AutomationAction, runs: list[AutomationRun]) -> None:
    """Enrol reachable contacts; one already active in the sequence stays as it is."""
    reachable = Contact.objects.filter(pk__in={r.contact_id for r in runs}).reachable().values_list("pk", flat=True)
    Enrolment.objects.bulk_create(
        [Enrolment(sequence=action.sequence, contact_id=pk, automation=automation) for pk in reachable],
        ignore_conflicts=True,
    )


def owned_contacts(runs: list[AutomationRun]) -> dict[int, Contact]:
    contacts = Contact.objects.filter(pk__in={r.contact_id for r in runs}, owner__isnull=False)
    return {c.pk: c for c in contacts.select_related("owner")}


def describe(automation: Automation) -> tuple[str, str]:
    verb = "joined" if automation.trigger == ChangeKind.JOIN else "left"
    return verb, automation.trigger_segment.name


def email_owners(automation: Automation, action: AutomationAction, runs: list[AutomationRun]) -> None:
    """One email per owner listing their contacts of the batch (owners without an address get none)."""
    verb, segment = describe(automation)
    by_owner: dict[User, list[Contact]] = defaultdict(list)
    for contact in owned_contacts(runs).values():
        if contact.owner is not None:
            by_owner[contact.owner].append(contact)
    for owner, contacts in by_owner.items():
        if not owner.email:
            continue
        count = f"{len(contacts)} of your contacts" if len(contacts) > 1 else "Your contact"
        lines = "\n".join(f"- {c}" for c in contacts)
        send_mail(
            subject=f"[crmseg] {count} {verb} {segment}",
            message=f"{count} {verb} the segment {segment!r} (automation {automation.name!r}):\n\n{lines}",
            from_email=None,
            recipient_list=[owner.email],
        )


def notify_owners(automation: Automation, action: AutomationAction, runs: list[AutomationRun]) -> None:
    """An in-app notification per run for the contact's owner."""
    verb, segment = describe(automation)
    contacts = owned_contacts(runs)
    Notification.objects.bulk_create(
        Notification(
            recipient=contacts[run.contact_id].owner,
            contact=contacts[run.contact_id],
            automation=automation,
            run=run,
            message=f"{contacts[run.contact_id]} {verb} segment {segment!r} (automation {automation.name!r}).",
        )
        for run in runs
        if run.contact_id in contacts
    )


def call_webhook(automation: Automation, action: AutomationAction, runs: list[AutomationRun]) -> None:
    """POST the batch's reachable contacts, signed, in the destination's batch size.

    Suppressed (skipped earlier) and unreachable contacts never leave. Each request's idempotency
    key is derived from the run ids, so the retry of a failed batch repeats the keys it sent.
    """
    reachable = Contact.objects.filter(pk__in={r.contact_id for r in runs}).reachable()
    members = list(reachable.values("id", "email", "first_name", "last_name").order_by("id"))
    destination = action.destination
    if destination is None:
        raise ValueError(f"The action {action} names no webhook destination.")
    run_ids = ",".join(str(pk) for pk in sorted(r.pk for r in runs))
    added = automation.trigger == ChangeKind.JOIN
    for start in range(0, len(members), destination.batch_size):
        chunk = members[start : start + destination.batch_size]
        payload = {
            "source": "automation",
            "automation": {"id": automation.pk, "name": automation.name},
            "segment": {"slug": automation.trigger_segment.slug, "name": automation.trigger_segment.name},
            "trigger": automation.trigger,
            "added": chunk if added else [],
            "removed": [] if added else chunk,
        }
        key = hashlib.sha256(f"automation:{action.pk}:{run_ids}:{start}".encode()).hexdigest()[:40]
        post_json(destination, payload, idempotency_key=key)


Action = Callable[[Automation, AutomationAction, list[AutomationRun]], None]

# Side effects outside this database: run before the action's transaction, never holding it open.
DELIVER: dict[str, Action] = {
    ActionKind.NOTIFY_OWNER: email_owners,
    ActionKind.WEBHOOK: call_webhook,
}
# Writes here: run in one transaction with recording the action as done on the runs.
WRITE: dict[str, Action] = {
    ActionKind.ADJUST_SCORE: adjust_score,
    ActionKind.ENROL: enrol,
    ActionKind.NOTIFY_OWNER: notify_owners,
}
