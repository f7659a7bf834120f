"""What a rule reads: contact data, or only the stored members of other segments.

The API asks this before it checks or counts a rule for a caller: field conditions (contact,
`company.*`, `props.*`, `metrics.*`) and event conditions read a contact's own data, which needs
the right to read contacts, while `in_segment` conditions read memberships only.
"""

from __future__ import annotations

GROUP_KEYS = ("all", "any", "not")


def reads_contact_data(rule: object) -> bool:
    """True when any node of `rule` is a field or event condition.

    Walks the tree with a list instead of recursion, so a rule nested however deep (valid or not)
    is answered without a RecursionError; anything that is not a group, field or event condition
    reads nothing.
    """
    pending = [rule]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            if "field" in node or "event" in node:
                return True
            pending.extend(node[key] for key in GROUP_KEYS if key in node)
    return False
