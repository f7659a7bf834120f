"""Search every contact for duplicates and refresh the admin's review queue (contacts/duplicates.py)."""

from django.core.management.base import BaseCommand

from contacts.duplicates import find_duplicates


class Command(BaseCommand):
    help = "Find contacts that may be one person and queue the pairs for review in the admin."

    def handle(self, *args, **options) -> None:
        self.stdout.write(str(find_duplicates()))
