"""python manage.py keep_removal_rows: removal rows for the export snapshots kept before they were.

Run once after upgrading (issue 24); safe to run again (rows that have one are left alone).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from activation.models import Activation
from activation.removals import fill_removal_rows


class Command(BaseCommand):
    help = "Make the missing removal rows of every activation's export snapshot from its contacts as they are now."

    def handle(self, *args, **options) -> None:
        total = 0
        for activation in Activation.objects.select_related("destination").order_by("pk"):
            filled = fill_removal_rows(activation)
            total += filled
            if filled:
                self.stdout.write(f"{activation.name}: {filled:,} removal rows kept")
        self.stdout.write(f"{total:,} removal rows kept in all.")
