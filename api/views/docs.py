"""The OpenAPI schema and its Swagger UI, for signed-in users and API keys unless API_DOCS_PUBLIC."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, permissions
from rest_framework.request import Request


class DocsAccess(permissions.BasePermission):
    """Any signed-in user or valid API key, whatever its scopes; everyone with API_DOCS_PUBLIC."""

    def has_permission(self, request: Request, view) -> bool:
        return settings.API_DOCS_PUBLIC or bool(request.user and request.user.is_authenticated)


class SchemaView(SpectacularAPIView):
    permission_classes = [DocsAccess]


class DocsView(SpectacularSwaggerView):
    permission_classes = [DocsAccess]

    def handle_exception(self, exc: Exception):
        # A person opening the docs in a browser is sent to sign in, then back.
        if isinstance(exc, exceptions.NotAuthenticated):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)
