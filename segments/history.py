"""The explainer's word on membership changes: `MembershipChange.detail`, where cheap.

A refresh that wrote a few changes (at most DETAIL_CAP) asks, once it has committed, for a task
(`segments.tasks.describe_changes_task`) that fills their details: each changed contact is
explained once (all the segments it joined or left in one explainer pass, with each segment's
stored percent thresholds), and each history row gets the conditions that decided: for a join the
conditions that now hold, for a leave those that no longer do, each with the contact's value,
e.g. `lead_score gte 50: true (80)`. The explainer speaks about the rule now, so a leave caused
by the parent may show a rule that still holds; the row's reason says which.

Why after commit, in a task of its own: explaining costs a few queries and some Python per
changed contact, more than a small segment's whole refresh statement, and the refresh would hold
its segment locks for it. The refresh commits membership and history (with their reasons) at
once; the details follow within moments. The task explains with the data it then reads, at the
refresh's `now`; should a contact have changed again so that the rule now says the opposite of
the row (a join the rule no longer admits), that row gets no detail rather than a contradiction.
Rows that already have a detail are left alone, so a retried task writes nothing twice.

The changed contacts' data is read once for all of them (three queries, `load_facts`). Refreshes
that changed more than DETAIL_CAP rows (usually a first build, a rule edit or a
metrics run) ask for none.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from django.db import connection

from contacts.models import Contact
from crmseg_site.queueing import enqueue_with_commit
from segments.explaining import explain_segments, held_reasons
from segments.models import ChangeKind, ChangeReason, MembershipChange, Segment, SegmentKind
from segments.rules.explainer import Explanation, Node, load_facts
from segments.rules.registry import get_fields
from segments.rules.validation import referenced_slugs, validate_rule

DETAIL_CAP = 50
_CHANGE = MembershipChange._meta.db_table
# The task that describes a refresh's changes (segments/tasks.py), as django-q names it.
DESCRIBE_TASK = "segments.tasks.describe_changes_task"
_LEAVES = ("condition", "event", "in_segment")


def wants_details(changes: int) -> bool:
    """Whether a refresh that wrote this many changes asks for their details."""
    return 0 < changes <= DETAIL_CAP


def request_details(segment_ids: Iterable[int], *, changed_at: datetime, now: datetime) -> None:
    """Queue, with the current transaction, the task that describes the rows these segments wrote
    at `changed_at` (one task per refresh; none if it rolls back; crmseg_site/queueing.py)."""
    ids = sorted(set(segment_ids))
    if ids:
        enqueue_with_commit(DESCRIBE_TASK, ids, changed_at, now, group="segment-details")


def describe_changes(segment_ids: list[int], *, changed_at: datetime, now: datetime) -> int:
    """Fill `detail` on the rows these segments wrote at `changed_at` that have none, if there are
    at most DETAIL_CAP of them; returns how many got one.

    Queries: the rows, their segments, three for the contacts' data, one update (the rows and the
    update as SQL written once: compiling them through the ORM cost ~1 ms of Python a refresh).
    """
    changes = _changes(segment_ids, changed_at=changed_at)
    if not changes or len(changes) > DETAIL_CAP:
        return 0
    changed_segments = {change.segment_id for change in changes}
    segments = Segment.objects.only("kind", "rule", "percent_thresholds").in_bulk(changed_segments)
    fields = get_fields()
    by_contact: dict[int, list[_Change]] = {}
    for change in changes:
        if change.segment_id in segments:
            by_contact.setdefault(change.contact_id, []).append(change)
    # Rules that no longer validate get no detail (the explainer refuses them); the others' data
    # is read once for every changed contact.
    rules = [segment.rule for _, segment in sorted(segments.items())]
    readable = [rule for rule in rules if not validate_rule(rule, segment_slugs=referenced_slugs(rule), fields=fields)]
    facts = load_facts({"any": readable}, list(by_contact), now=now, fields=fields) if readable else {}
    held = held_reasons([pk for pk, s in segments.items() if s.kind == SegmentKind.SUPPRESSION], list(by_contact))
    described: dict[int, dict] = {}
    for contact_id, contact_changes in by_contact.items():
        if contact_id not in facts:  # deleted since the refresh, or only invalid rules
            continue
        changed = [segments[change.segment_id] for change in contact_changes]
        explained = explain_segments(
            changed, Contact(pk=contact_id), now=now, fields=fields, facts=facts[contact_id], held=held
        )
        for change, explanation in zip(contact_changes, explained, strict=True):
            if isinstance(explanation, Explanation) and _agrees(explanation, change):
                described[change.pk] = describe(explanation)
    _store(described)
    return len(described)


class _Change(NamedTuple):
    pk: int
    segment_id: int
    contact_id: int
    kind: str
    reason: str


def _agrees(explanation: Explanation, change: _Change) -> bool:
    """The explainer's answer (rule or hold) fits the row: it holds for a join, and fails for a
    leave unless the parent's leave caused it (then the rule may still hold)."""
    return explanation.result == (change.kind == ChangeKind.JOIN) or change.reason == ChangeReason.PARENT


def _changes(segment_ids: list[int], *, changed_at: datetime) -> list[_Change]:
    """The undescribed rows these segments wrote at `changed_at` by contact, at most one more
    than DETAIL_CAP."""
    placeholders = ", ".join(["%s"] * len(segment_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT id, segment_id, contact_id, kind, reason FROM {_CHANGE} WHERE segment_id IN ({placeholders})
            AND changed_at = %s AND detail IS NULL ORDER BY contact_id, segment_id LIMIT %s""",
            [*segment_ids, connection.ops.adapt_datetimefield_value(changed_at), DETAIL_CAP + 1],
        )
        return [_Change(*row) for row in cursor.fetchall()]


def _store(details: dict[int, dict]) -> None:
    """Write each row's detail in one UPDATE (none without details), encoded as the ORM would."""
    if not details:
        return
    field = MembershipChange._meta.get_field("detail")
    value = " ".join(["WHEN %s THEN %s"] * len(details))
    if connection.features.requires_casted_case_in_updates:  # PostgreSQL: typed as the column, as bulk_update does
        value = f"CAST(CASE id {value} END AS {field.db_type(connection)})"
    else:
        value = f"CASE id {value} END"
    params = [part for pk, detail in details.items() for part in (pk, field.get_db_prep_save(detail, connection))]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_CHANGE} SET detail = {value} WHERE id IN ({', '.join(['%s'] * len(details))})",
            [*params, *details],
        )


def describe(explanation: Explanation) -> dict:
    """The detail stored on a change row: the result, a sentence, the deciding conditions (and the
    merges holding the contact, for a suppression segment)."""
    root = explanation.root
    # a held contact the rule alone would refuse: the hold decides, not the rule's failing conditions
    conditions = [_leaf(leaf) for leaf in deciding_conditions(root)] if root.result == explanation.result else []
    held = [{"kind": "held", "result": True, "text": reason} for reason in explanation.held]
    return {"result": explanation.result, "summary": explanation.summary(), "conditions": conditions + held}


def detail_text(detail: dict | None) -> str:
    """A stored detail in one line, e.g. "lead_score gte 50: true (80)"; empty when there is none."""
    if not isinstance(detail, dict):
        return ""
    return "; ".join(str(condition.get("text", "")) for condition in detail.get("conditions", []))


def deciding_conditions(node: Node) -> list[Node]:
    """The leaves that make the node what it is: the holding ones of a true `all` or `any`, the
    failing ones of a false `all`, every one of a false `any`; through `not` unchanged."""
    if node.kind in _LEAVES:
        return [node]
    if node.kind == "not":
        return deciding_conditions(node.children[0])
    if node.kind == "all":
        children = node.children if node.result else [child for child in node.children if not child.result]
    else:
        children = [child for child in node.children if child.result] if node.result else node.children
    return [leaf for child in children for leaf in deciding_conditions(child)]


def _leaf(node: Node) -> dict:
    shown = node.to_dict()
    del shown["children"]
    return shown
