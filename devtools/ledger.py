"""What a load with killed processes must leave behind (bench_load --kill-*): every acknowledged write
stored once, and every join of the probe segment run once by its automation.

The probe: each ingest request of the load carries one demo request in a campaign of its own; the
segment "performed that demo request" starts empty, and its automation adds 1 to the lead score of
each contact who joins. So the contacts with a stored probe activity must each join once, each join
must have one finished run, and each joiner's lead score must have moved by exactly what the
finished runs of every automation say they applied (1 for ours).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime

from django.db.models import Count
from django.utils import timezone

from activation.automation_models import ActionKind, Automation, AutomationAction, AutomationRun, AutomationRunStatus
from contacts.models import Activity, Contact
from segments.models import ChangeKind, MembershipChange, Segment
from segments.refresh import refresh_segment

CHUNK = 5000
FINISHED = (AutomationRunStatus.DONE, AutomationRunStatus.SKIPPED)


@dataclass
class Probe:
    campaign: str
    segment: Segment
    automation: Automation
    since: datetime
    scores: dict[int, int]  # lead score of each load contact when the probe was made


def make_probe(contact_ids: list[int]) -> Probe:
    """The probe segment (built: empty) and its join automation, with the load contacts' scores now."""
    token = uuid.uuid4().hex[:10]
    campaign = f"killload-{token}"
    rule = {"event": {"kind": "demo_request", "campaign": campaign}, "op": "performed"}
    segment = Segment.objects.create(name=f"Kill probe {token}", slug=campaign, kind="dynamic", rule=rule)
    if refresh_segment(segment.pk).status != "ok":
        raise RuntimeError(f"the probe segment {segment.slug} could not be built")
    automation = segment.automations.create(name=f"kill probe {token}", trigger=ChangeKind.JOIN)
    AutomationAction.objects.create(automation=automation, position=0, kind=ActionKind.ADJUST_SCORE, score_delta=1)
    scores = dict(Contact.objects.filter(pk__in=contact_ids).values_list("pk", "lead_score"))
    return Probe(campaign, segment, automation, timezone.now(), scores)


def drop_probe(probe: Probe) -> None:
    """Remove the probe segment and its automation (its runs go with it; the activities stay)."""
    probe.automation.delete()
    probe.segment.delete()


@dataclass
class Account:
    writes_acknowledged: int = 0
    writes_lost: int = 0  # acknowledged, not stored
    writes_duplicated: int = 0  # stored more than once
    joins_expected: int = 0  # contacts with a stored probe activity
    joins_missing: int = 0
    joins_duplicated: int = 0  # a second join of a contact that never left
    joins_unexpected: int = 0  # a join without a probe activity
    runs_expected: int = 0  # one per join
    runs_done: int = 0  # finished: done, or skipped for a suppression
    runs_missing: int = 0
    runs_duplicated: int = 0  # a second run of one join
    scores_off: int = 0  # joiners whose lead score moved by other than what the finished runs applied

    def failures(self) -> int:
        """Everything that must be zero."""
        counted = ("writes_lost", "writes_duplicated", "joins_missing", "joins_duplicated", "joins_unexpected")
        return sum(getattr(self, name) for name in counted) + self.runs_missing + self.runs_duplicated + self.scores_off

    def lines(self) -> list[str]:
        return [f"  {f.name.replace('_', ' ')}: {getattr(self, f.name)}" for f in fields(self)]


def stored_counts(external_ids: Iterable[str]) -> Counter[str]:
    """How many activity rows each external id has (ids with none are absent)."""
    ids = list(external_ids)
    counts: Counter[str] = Counter()
    for start in range(0, len(ids), CHUNK):
        rows = Activity.objects.filter(external_id__in=ids[start : start + CHUNK]).values("external_id")
        counts.update({str(row["external_id"]): row["n"] for row in rows.annotate(n=Count("id"))})
    return counts


def account(probe: Probe, *, acknowledged: Iterable[str]) -> Account:
    """Check writes, joins, runs and their effect against the database now."""
    acknowledged = set(acknowledged)
    stored = stored_counts(acknowledged)
    result = Account(
        writes_acknowledged=len(acknowledged),
        writes_lost=len(acknowledged - stored.keys()),
        writes_duplicated=sum(n - 1 for n in stored.values()),
    )
    expected = set(Activity.objects.filter(campaign=probe.campaign).values_list("contact_id", flat=True))
    changes = MembershipChange.objects.filter(segment=probe.segment)
    joins = list(changes.filter(kind=ChangeKind.JOIN).values_list("pk", "contact_id"))
    joined = Counter(contact for _, contact in joins)
    result.joins_expected = len(expected)
    result.joins_missing = len(expected - joined.keys())
    # A contact joins again only after leaving (nothing in the load makes one leave).
    left = Counter(changes.filter(kind=ChangeKind.LEAVE).values_list("contact_id", flat=True))
    result.joins_duplicated = sum(max(0, n - 1 - left[contact]) for contact, n in joined.items())
    result.joins_unexpected = len(joined.keys() - expected)

    runs: Counter[int] = Counter()
    finished = set()
    for change, status in AutomationRun.objects.filter(automation=probe.automation).values_list("change_id", "status"):
        runs[change] += 1
        if status in FINISHED:
            finished.add(change)
    result.runs_expected = len(joins)
    result.runs_done = len(finished)
    result.runs_missing = sum(1 for change, _ in joins if change not in finished)
    result.runs_duplicated = sum(n - 1 for n in runs.values())
    result.scores_off = len(scores_off(probe, joined.keys()))
    return result


def scores_off(probe: Probe, contacts: Iterable[int]) -> set[int]:
    """Joiners whose lead score moved by other than the score actions recorded as applied on the runs
    (of any automation) that finished since the probe was made."""
    contacts = set(contacts) & probe.scores.keys()
    deltas = dict(AutomationAction.objects.filter(kind=ActionKind.ADJUST_SCORE).values_list("pk", "score_delta"))
    applied: Counter[int] = Counter()
    runs = AutomationRun.objects.filter(contact_id__in=contacts, finished_at__gte=probe.since)
    for contact, done in runs.values_list("contact_id", "done_actions"):
        applied[contact] += sum(deltas.get(action) or 0 for action in done)
    now = dict(Contact.objects.filter(pk__in=contacts).values_list("pk", "lead_score"))
    return {pk for pk in contacts if now[pk] - probe.scores[pk] != applied[pk]}


def settled(result: Account) -> bool:
    """Nothing left to wait for: every expected join happened and every join's run finished."""
    return not result.joins_missing and not result.runs_missing
