"""Dimension comparison: the cells of the metrics schemes, contacts without a metrics row included."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from scipy.stats.contingency import association
from sklearn.metrics import mutual_info_score

from contacts.models import Activity, Contact, ContactMetrics
from segments.boundaries import HOLDOUT_MODULUS, MULTIPLIER, OFFSET, PRIME, TRAIN_BELOW, compare_dimensions

pytestmark = pytest.mark.django_db

FIRST_ID = 2_000_001
LEVELS = ["highly_engaged", "disengaged"]
TOPICS = ["cloud", ""]
RFV = ["champions", "at_risk", ""]


def heldout(pk):
    return ((pk % PRIME) * MULTIPLIER + OFFSET) % PRIME % HOLDOUT_MODULUS >= TRAIN_BELOW


def plant(n=1500):
    """Every fourth contact without a metrics row; the others with an engagement level, a top topic
    and an RFV cell (some blank, as a contact without metrics is); purchases likelier for the
    highly engaged, and for a sixth of those without metrics. Returns each contact's behavioural
    and RFV cell and whether it converted."""
    now = timezone.now()
    contacts = Contact.objects.bulk_create(
        Contact(pk=FIRST_ID + i, email=f"d{i}@example.com", lifecycle_stage="lead") for i in range(n)
    )
    cells, metrics, purchases = {}, [], []
    for i, contact in enumerate(contacts):
        if i % 4 == 0:
            behavioural, rfv = ("", ""), ""
            converted = i % 6 == 0
        else:
            behavioural, rfv = (LEVELS[i // 4 % 2], TOPICS[i // 8 % 2]), RFV[i % 3]
            converted = i % 10 < (4 if behavioural[0] == "highly_engaged" else 1)
            metrics.append(
                ContactMetrics(
                    contact=contact, as_of=now, engagement_score=i % 7, engagement_level=behavioural[0],
                    top_topic=behavioural[1], rfv_cell=rfv, email_engagement_level="disengaged",
                    web_activity_level="inactive",
                )
            )  # fmt: skip
        if converted:
            purchases.append(Activity(contact=contact, kind="purchase", value=50, occurred_at=now - timedelta(days=2)))
        cells[contact.pk] = (behavioural, rfv, int(converted))
    ContactMetrics.objects.bulk_create(metrics)
    Activity.objects.bulk_create(purchases)
    return cells, now


def heldout_table(cells, part):
    """Held-out contacts by cell (the `part` of each contact's cells) and outcome."""
    names = sorted({str(cell[part]) for cell in cells.values()})
    table = np.zeros((len(names), 2))
    for pk, cell in cells.items():
        if heldout(pk):
            table[names.index(str(cell[part])), cell[2]] += 1
    return table


@pytest.mark.parametrize("schemes", [["behavioral", "rfv"], ["lifecycle", "behavioral", "rfv"]])
def test_contacts_without_metrics_share_the_blank_cell_of_each_metrics_scheme(schemes):
    # given a quarter of the contacts without a metrics row, and metrics rows with blank cells
    cells, now = plant()

    # when the metrics schemes are compared, alone or beside a scheme of the contacts' own columns
    report = compare_dimensions(schemes, now=now)

    # then each scheme's held-out table is that of every contact's cell, blank for those without metrics
    by_scheme = {s.scheme: s for s in report.schemes}
    for scheme, part, count in (("behavioral", 0, 5), ("rfv", 1, 3)):
        table = heldout_table(cells, part)
        assert by_scheme[scheme].cells == count == len(table)
        assert by_scheme[scheme].cramers_v == pytest.approx(association(table.astype(int), method="cramer"))
        assert by_scheme[scheme].information_gain == pytest.approx(
            mutual_info_score(None, None, contingency=table) / np.log(2)
        )
    assert report.heldout_contacts == sum(heldout(pk) for pk in cells)
    assert by_scheme["behavioral"].best_cell.startswith("highly_engaged")
