"""python manage.py create_api_key NAME --scopes contacts:read,activities:write [--expires 2027-01-01]"""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from api.keys import create_api_key
from api.models import Scope


class Command(BaseCommand):
    help = "Create an API key and print it once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Which integration uses the key")
        parser.add_argument("--scopes", required=True, help=f"Comma-separated, from: {', '.join(Scope.values)}")
        parser.add_argument("--expires", help="ISO-8601 date or date-time after which the key stops working")

    def handle(self, *args, name: str, scopes: str, expires: str | None, **options) -> None:
        scope_list = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        if not scope_list:
            raise CommandError(f"Give at least one scope, from: {', '.join(Scope.values)}")
        expires_at = None
        if expires:
            try:
                expires_at = datetime.fromisoformat(expires)
            except ValueError:
                raise CommandError(f"--expires {expires!r} is not an ISO-8601 date or date-time") from None
            if timezone.is_naive(expires_at):
                expires_at = timezone.make_aware(expires_at)
            if expires_at <= timezone.now():
                raise CommandError(f"--expires {expires} is in the past")
        try:
            api_key, plain = create_api_key(name=name, scopes=scope_list, expires_at=expires_at)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stderr.write(
            f"Created API key {api_key.name!r} (prefix {api_key.prefix}) with scopes {', '.join(api_key.scopes)}."
        )
        self.stderr.write("It is shown once; store it now:")
        self.stdout.write(plain)
