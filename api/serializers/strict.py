"""Request bodies are read strictly: a field the endpoint does not take, or text with a NUL
character (which PostgreSQL cannot store), is refused by name, as the bulk endpoints refuse them per row."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.settings import api_settings

from crmseg_site.untrusted_json import nul_paths

NUL_MESSAGE = "Text may not contain NUL characters."


def input_problems(data: dict, writable: set[str], *, read_only: set[str] = frozenset()) -> dict[str, list[str]]:
    """{field or JSON path: [message]} for unknown or read-only fields and texts containing NUL."""
    errors: dict[str, list[str]] = {}
    for key in data:
        if key in read_only:
            errors[str(key)] = [f"{key!r} is read-only; leave it out."]
        elif key not in writable:
            listed = ", ".join(sorted(writable))
            errors[str(key)] = [f"Unknown field {key!r}; this endpoint takes: {listed}."]
    for path in nul_paths({k: v for k, v in data.items() if k in writable}):
        errors.setdefault(path or api_settings.NON_FIELD_ERRORS_KEY, []).append(NUL_MESSAGE)
    return errors


class StrictInput:
    """Mixed into every serializer that reads a request body (before serializers.Serializer)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            fields = self.fields
            writable = {name for name, field in fields.items() if not field.read_only}
            errors = input_problems(data, writable, read_only=set(fields) - writable)
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)
