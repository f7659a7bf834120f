"""One request budget per API key (or per signed-in user), rate from settings.API_THROTTLE_RATE."""

from __future__ import annotations

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from api.models import ApiKey


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api"

    def get_rate(self) -> str | None:
        # Read on every request (not at import) so the setting can change without a restart of tests.
        return settings.API_THROTTLE_RATE or None

    def get_cache_key(self, request: Request, view) -> str | None:
        if isinstance(request.auth, ApiKey):
            return f"throttle:api:key:{request.auth.pk}"
        if request.user and request.user.is_authenticated:
            return f"throttle:api:user:{request.user.pk}"
        return None
