"""Run a rule through both readers: the compiler's one query and the explainer, contact by contact."""

from datetime import datetime

from contacts.models import Contact
from segments.rules.compiler import matching_contacts
from segments.rules.explainer import explain


def selected(rule: dict, *, now: datetime, attribute: str = "first_name") -> list:
    """Sorted `attribute` values of the contacts `rule` selects; fails unless the explainer agrees."""
    compiled = sorted(matching_contacts(rule, now=now).values_list(attribute, flat=True))
    explained = sorted(getattr(c, attribute) for c in Contact.objects.all() if explain(rule, c, now=now).result)
    assert explained == compiled, f"explainer selects {explained}, compiler {compiled}"
    return compiled
