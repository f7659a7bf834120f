"""One error shape for every failure: {"error": {"code", "message", "field", "details"}}.

`field` is the query parameter, body field or JSON path the error is about (`rows[3].email`,
`rule.all[1].op`) or null; `details` carries every individual problem for validation errors.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An API error that names the field it is about and may carry details."""

    def __init__(self, message: str, *, field: str | None = None, details: dict | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.details = details


class UnknownParameter(ApiError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "unknown_parameter"


class InvalidCursor(ApiError):
    """404: a cursor names a page of a list, and no page has one this API did not issue. (Any text
    is a well-formed cursor, so the schema cannot tell a client which ones exist.)"""

    status_code = status.HTTP_404_NOT_FOUND
    default_code = "invalid_cursor"


class InvalidParameter(ApiError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_parameter"


class PayloadTooLarge(ApiError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class TooDeep(ApiError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "too_deep"


class Conflict(ApiError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


# Validation codes that depend on stored data, not on the request: answered 409, not 400.
STATE_CODES = {"unique", "does_not_exist"}


def join_path(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    if key == api_settings.NON_FIELD_ERRORS_KEY:
        return prefix
    return f"{prefix}.{key}" if prefix else str(key)


def flatten_errors(detail: Any, path: str = "") -> list[dict]:
    """Turn DRF's nested error detail into a flat list of {path, message, code}."""
    if isinstance(detail, dict):
        return [item for key, value in detail.items() for item in flatten_errors(value, join_path(path, key))]
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [item for value in detail for item in flatten_errors(value, path)]
        return [item for index, value in enumerate(detail) for item in flatten_errors(value, join_path(path, index))]
    return [{"path": path or None, "message": str(detail), "code": getattr(detail, "code", None) or "invalid"}]


def error_body(code: str, message: str, *, field: str | None = None, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "field": field, "details": details}}


def _validation_body(exc: exceptions.ValidationError) -> dict:
    errors = flatten_errors(exc.detail)
    first: dict[str, Any] = errors[0] if errors else {"path": None, "message": "Invalid input."}
    message = f"{first['path']}: {first['message']}" if first["path"] else first["message"]
    if len(errors) > 1:
        message = f"{message} (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return error_body("invalid", message, field=first["path"], details={"errors": errors})


def body_too_large(request) -> PayloadTooLarge:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    received = int(request.META.get("CONTENT_LENGTH") or 0)
    return PayloadTooLarge(
        f"The request body is {received:,} bytes; at most {limit:,} are accepted (DATA_UPLOAD_MAX_MEMORY_SIZE)."
        " Split the batch.",
        details={"limit": limit, "received": received},
    )


def exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, RequestDataTooBig):
        exc = body_too_large(context["request"])
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in API view %s", context.get("view"), exc_info=exc)
        return Response(
            error_body("server_error", "Internal error; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        response.data = _validation_body(exc)
        if {e["code"] for e in response.data["error"]["details"]["errors"]} <= STATE_CODES:
            # Well-formed input that clashes with what is stored: retrying after the clash is
            # resolved (the other object renamed, the referenced one created) succeeds.
            response.status_code = status.HTTP_409_CONFLICT
            response.data["error"]["code"] = "conflict"
    elif isinstance(exc, ApiError):
        response.data = error_body(exc.default_code, str(exc.detail), field=exc.field, details=exc.details)
    elif isinstance(exc, exceptions.Throttled):
        wait = exc.wait  # type: ignore[attr-defined]  # DRF sets Throttled.wait; its stubs leave it out
        response.data = error_body("throttled", str(exc.detail), details={"retry_after": wait and int(wait + 0.999)})
    elif isinstance(exc, exceptions.APIException):
        details = {"scopes": list(exc.scopes)} if hasattr(exc, "scopes") else None
        code = getattr(exc.detail, "code", None) or exc.default_code
        response.data = error_body(code, str(exc.detail), details=details)
    return response
