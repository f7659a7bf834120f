"""OpenAPI: document the bearer key and the error responses every operation can give."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from api.serializers.errors import ErrorSerializer


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "crmseg_<prefix>_<secret>",
            "description": "An API key from the admin or `manage.py create_api_key`; its scopes limit what it may do.",
        }


ERROR_DESCRIPTIONS = {
    "400": "Invalid input: validation error (with JSON paths), malformed JSON, unknown or bad query parameter",
    "401": "Missing, malformed, unknown, expired or revoked API key",
    "403": "The key or role lacks the scope this request needs (named in the message)",
    "404": "No such object or endpoint",
    "405": "Method not allowed on this endpoint",
    "413": "Too many rows in a bulk request (the limit is in details.limit)",
    "415": "Body is not application/json",
    "429": "Too many requests for this key; retry after the Retry-After header's seconds",
}


class ApiAutoSchema(AutoSchema):
    """Adds the shared error responses to every operation."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = ["400", "401", "403", "404", "405", "429"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append("415")
        if self.path.endswith(("/bulk/", "/bulk-upsert/")):
            codes.append("413")
        for code in codes:
            responses.setdefault(code, self._get_response_for_code(ErrorSerializer, code, direction=direction))
            responses[code]["description"] = ERROR_DESCRIPTIONS[code]
        return responses
