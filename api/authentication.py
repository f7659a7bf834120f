"""`Authorization: Bearer crmseg_<prefix>_<secret>`: the key is the caller; its scopes are its rights."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from api.keys import InvalidKey, check_api_key
from api.models import ApiKey


class KeyPrincipal:
    """request.user for a call made with an API key: authenticated, but no person and no staff rights."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key

    def __str__(self) -> str:
        return f"API key {self.api_key.name}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[KeyPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, credentials = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            return None
        credentials = credentials.strip()
        if not credentials:
            raise exceptions.AuthenticationFailed("Empty bearer token: send 'Authorization: Bearer <api key>'.")
        now = timezone.now()
        try:
            api_key = check_api_key(credentials, now=now)
        except InvalidKey as error:
            raise exceptions.AuthenticationFailed(str(error)) from None
        api_key.touch(now=now)
        return KeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to a request without credentials.
        return f'{self.keyword} realm="api"'
