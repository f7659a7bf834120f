"""Background work on contacts (django-q2): metrics recompute, nightly and after writes (the catch-up).

Tasks take ids, never objects, and are idempotent: recomputing a contact twice as of the same
time writes the same row.
"""

from __future__ import annotations

from django.conf import settings

from contacts import catch_up, company_duplicates, duplicates, hygiene, imports, partitions, retention
from contacts.metrics.compute import compute_metrics
from contacts.models import Activity
from contacts.table_statistics import analyze

NIGHTLY_SCHEDULE = "contacts: compute metrics nightly"
HYGIENE_SCHEDULE = "contacts: check list hygiene daily"
CATCH_UP_SCHEDULE = "contacts: catch up with changed contacts"


def compute_all_metrics() -> str:
    """Recompute every contact's metrics as of now (the nightly run)."""
    return str(compute_metrics())


def compute_contact_metrics(contact_ids: list[int]) -> str:
    """Recompute the metrics of these contacts only, ranked against everyone's stored metrics."""
    return str(compute_metrics(contact_ids=contact_ids))


def recompute_changed_metrics(contact_ids: list[int]) -> None:
    """contacts.changes deriver (in the catch-up task): the changed contacts' metrics, first of all."""
    if settings.METRICS_RECOMPUTE_ON_WRITE and contact_ids:
        compute_metrics(contact_ids=contact_ids)


def catch_up_task() -> dict:
    """Catch up with the contacts writes changed (contacts/catch_up.py); queued after writes and
    every minute, in case a queued one was lost."""
    return catch_up.catch_up().as_dict()


def run_import(import_id: int) -> str:
    """Run a queued file import (contacts.imports); a redelivered task finds it claimed and stops."""
    return imports.run_import(import_id)


def find_duplicates() -> str:
    """Search every contact for duplicates and refresh the review queue (contacts.duplicates)."""
    return str(duplicates.find_duplicates())


def find_company_duplicates() -> str:
    """Search every company for duplicates and refresh their review queue (contacts.company_duplicates)."""
    return str(company_duplicates.find_company_duplicates())


def check_hygiene() -> str:
    """The list hygiene check of every contact (contacts.hygiene)."""
    return str(hygiene.check_hygiene())


def make_activity_partitions() -> str:
    """The activity table's partitions of this month and the next ones (contacts.partitions), then
    ANALYZE of the whole table: autovacuum analyses each partition but never a partitioned parent,
    whose statistics the planner reads for statements over all months."""
    made = partitions.ensure_partitions()
    if partitions.partitioned():
        analyze(Activity)
    return ", ".join(made) or "none missing"


def drop_old_activity_months() -> str:
    """Activity retention (contacts.retention): the months past ACTIVITY_RETENTION_MONTHS that every
    measure has read are dropped; nothing when the setting is 0."""
    return str(retention.apply_retention())
