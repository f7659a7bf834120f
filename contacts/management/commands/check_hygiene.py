"""Recompute every contact's reachability (contacts/hygiene.py) and record the counts."""

from django.core.management.base import BaseCommand

from contacts.hygiene import check_hygiene


class Command(BaseCommand):
    help = "Check list hygiene: invalid, unsubscribed, bounced, disposable, mistyped, role and inactive addresses."

    def handle(self, *args, **options) -> None:
        self.stdout.write(str(check_hygiene()))
