"""Search every company for duplicates and refresh the admin's review queue (contacts/company_duplicates.py)."""

from django.core.management.base import BaseCommand

from contacts.company_duplicates import find_company_duplicates


class Command(BaseCommand):
    help = "Find companies that may be one organisation and queue the pairs for review in the admin."

    def handle(self, *args, **options) -> None:
        self.stdout.write(str(find_company_duplicates()))
