"""Bring stored contacts up to the normalisation rules (contacts.normalize): the `normalize_contacts` job.

Contacts are read in batches by id and only the changed ones are written back (one bulk UPDATE per
batch), each keeping what was stored before in `original_values`. A value that cannot be
normalised is left as it is and listed; an e-mail whose normal form already belongs to another
contact is left too and listed as a duplicate for review.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from contacts import writes
from contacts.models import Contact, JobTitleRule
from contacts.normalize import CONTACT_NAME_FIELDS, CONTACT_TEXT_FIELDS, merged_originals, normalize_contact

FIELDS = ("email", "phone", "country", *CONTACT_NAME_FIELDS, *CONTACT_TEXT_FIELDS)
EXAMPLES = 20


@dataclass
class NormalizationReport:
    contacts_read: int = 0
    contacts_rewritten: int = 0
    changed: Counter = field(default_factory=Counter)  # field -> contacts whose value changed
    derived: Counter = field(default_factory=Counter)  # job_function / seniority filled from the title
    invalid: Counter = field(default_factory=Counter)  # field -> values that could not be normalised
    examples: list[tuple[int, str, str, str]] = field(default_factory=list)  # (id, field, value, message)
    email_collisions: list[tuple[int, str]] = field(default_factory=list)  # (id, e-mail of another contact)

    def lines(self) -> list[str]:
        out = [f"{self.contacts_read} contacts read, {self.contacts_rewritten} changed"]
        out += [f"  {name}: {n} normalised" for name, n in sorted(self.changed.items())]
        out += [f"  {name}: {n} filled from the job title" for name, n in sorted(self.derived.items())]
        out += [f"  {name}: {n} not normalisable (left as they were)" for name, n in sorted(self.invalid.items())]
        out += [f"    contact {pk} {name} {value!r}: {message}" for pk, name, value, message in self.examples]
        out += [
            f"  contact {pk}: its e-mail normalises to {email}, which another contact has (left; review as duplicate)"
            for pk, email in self.email_collisions
        ]
        return out


def normalize_stored_contacts(*, batch_size: int = 2000, dry_run: bool = False) -> NormalizationReport:
    report = NormalizationReport()
    titles = JobTitleRule.objects.title_map()
    columns = ["id", *FIELDS, "job_function", "seniority", "original_values"]
    last_id = 0
    while True:
        batch = list(Contact.objects.filter(id__gt=last_id).order_by("id").only(*columns)[:batch_size])
        if not batch:
            return report
        last_id = batch[-1].id
        report.contacts_read += len(batch)
        emails_before: dict[int, str] = {}  # contact id -> its e-mail before normalising, where that changes it
        changed = [contact for contact in batch if _normalize_one(contact, titles, report, emails_before)]
        _drop_email_collisions(changed, report, emails_before)
        report.contacts_rewritten += len(changed)
        if changed and not dry_run:
            writes.bulk_update(changed, [*FIELDS, "job_function", "seniority", "original_values"])


def _normalize_one(contact: Contact, titles, report: NormalizationReport, emails_before: dict[int, str]) -> bool:
    typed = {name: getattr(contact, name) for name in FIELDS}
    if contact.job_title and not (contact.job_function and contact.seniority):
        typed |= {"job_function": contact.job_function, "seniority": contact.seniority}
    result = normalize_contact(typed, titles=titles if "job_function" in typed else None)
    for name, messages in result.errors.items():
        report.invalid[name] += 1
        if len(report.examples) < EXAMPLES:
            report.examples.append((contact.id, name, typed[name], " ".join(messages)))
    originals = {name: value for name, value in result.originals.items() if name not in result.errors}
    derived = [name for name in ("job_function", "seniority") if result.values.get(name, "") != getattr(contact, name)]
    if not originals and not derived:
        return False
    for name in originals:
        setattr(contact, name, result.values[name])
        report.changed[name] += 1
    for name in derived:
        setattr(contact, name, result.values[name])
        report.derived[name] += 1
    contact.original_values = merged_originals(contact.original_values, [], originals)
    if originals.get("email") is not None:
        emails_before[contact.pk] = originals["email"]
    return True


def _drop_email_collisions(changed: list[Contact], report: NormalizationReport, emails_before: dict[int, str]) -> None:
    """Leave an e-mail alone whose normal form another contact already has (or an earlier one in the batch)."""
    moving = {contact.email: contact for contact in changed if contact.pk in emails_before}
    if not moving:
        return
    taken = set(Contact.objects.filter(email__in=list(moving)).values_list("email", flat=True))
    seen: set[str] = set()
    for contact in changed:
        if contact.pk not in emails_before:
            continue
        if contact.email in taken or contact.email in seen:
            report.email_collisions.append((contact.id, contact.email))
            report.changed["email"] -= 1
            contact.email = emails_before[contact.pk]
            del contact.original_values["email"]
        seen.add(contact.email)
