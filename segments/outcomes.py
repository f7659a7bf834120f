"""Rules as outcomes for propensity models (predictions.targets): a custom target's label is a
segment rule evaluated at the end of each horizon. Registered in SegmentsConfig.ready, since
predictions sits below segments and cannot import it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from segments.rules.compiler import matching_contacts
from segments.rules.validation import referenced_slugs, validate_rule


def label_rule_errors(rule: dict) -> list[str]:
    """The rule's errors, each naming its JSON path (empty when valid)."""
    return [str(error) for error in validate_rule(rule, segment_slugs=referenced_slugs(rule))]


def label_rule_members(rule: dict, now: datetime) -> Iterable[int]:
    """Ids of the contacts the rule selects at `now` (one statement)."""
    return matching_contacts(rule, now=now).values_list("pk", flat=True).iterator(chunk_size=10_000)
