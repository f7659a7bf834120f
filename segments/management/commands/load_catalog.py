"""Install the starter catalog of segments (idempotent)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from segments.catalog import load_catalog


class Command(BaseCommand):
    help = "Create the starter segments that do not exist yet; existing ones (maybe edited) are left alone."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", help="Username to own the new segments and sign their first rule version")

    def handle(self, *args, owner: str | None, **options) -> None:
        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"No user {owner!r}.")
        created, kept = load_catalog(owner=user)
        for segment in created:
            self.stdout.write(f"created  {segment.slug}")
        for segment in kept:
            self.stdout.write(f"exists   {segment.slug}")
        self.stdout.write(
            f"{len(created)} segment(s) created, {len(kept)} already there. "
            "New rule segments are built by the workers; run `manage.py refresh_segments` to build them now."
        )
