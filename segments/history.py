"""The explainer's word on membership changes: `MembershipChange.detail`, where cheap.

After a refresh writes its changes, each changed contact is explained once (all the segments it
joined or left in one explainer pass, with each segment's stored percent thresholds), and each
history row gets the conditions that decided: for a join the conditions that now hold, for a leave
those that no longer do, each with the contact's value, e.g. `lead_score gte 50: true (80)`.
The explainer speaks about the rule now, so a leave caused by the parent may show a rule that
still holds; the row's reason says which.

Explaining costs a few queries per contact, so only refreshes that changed at most DETAIL_CAP
rows record details: refresh_contacts of a few contacts, and full refreshes whose diff is small
(the usual hourly sweep). A first build, a rule edit or a metrics run leaves detail empty.
"""

from __future__ import annotations

from datetime import datetime

from contacts.models import Contact
from segments.explaining import explain_segments
from segments.models import MembershipChange, Segment
from segments.rules.explainer import Explanation, Node
from segments.rules.registry import Field

DETAIL_CAP = 50
_LEAVES = ("condition", "event", "in_segment")


def record_details(
    segments: dict[int, Segment], *, changed_at: datetime, now: datetime, fields: dict[str, Field]
) -> int:
    """Fill `detail` on the rows these segments wrote at `changed_at`, if at most DETAIL_CAP.

    Returns how many rows got a detail. Queries: the rows, the explainer's few per contact, one update.
    """
    rows = MembershipChange.objects.filter(segment_id__in=list(segments), changed_at=changed_at)
    changes = list(rows.only("pk", "segment_id", "contact_id").order_by("contact_id", "segment_id")[: DETAIL_CAP + 1])
    if not changes or len(changes) > DETAIL_CAP:
        return 0
    by_contact: dict[int, list[MembershipChange]] = {}
    for change in changes:
        by_contact.setdefault(change.contact_id, []).append(change)
    described = []
    for contact_id, contact_changes in by_contact.items():
        changed = [segments[change.segment_id] for change in contact_changes]
        # The explainer loads the contact itself; an invalid rule gets no detail.
        explained = explain_segments(changed, Contact(pk=contact_id), now=now, fields=fields)
        for change, node in zip(contact_changes, explained, strict=True):
            if isinstance(node, Node):
                change.detail = describe(node)
                described.append(change)
    MembershipChange.objects.bulk_update(described, ["detail"])
    return len(described)


def describe(node: Node) -> dict:
    """The detail stored on a change row: the rule's result, a sentence, the deciding conditions."""
    return {
        "result": node.result,
        "summary": Explanation(node).summary(),
        "conditions": [_leaf(leaf) for leaf in deciding_conditions(node)],
    }


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
