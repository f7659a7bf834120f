"""Request bodies are read strictly: a field the endpoint does not take, text with a NUL character
(which PostgreSQL cannot store), or a value of another JSON type than the schema says (DRF would
turn 5 into "5", 0 into false and "7" into 7) is refused by name, as the bulk endpoints refuse them."""

from __future__ import annotations

from collections.abc import Set

from rest_framework import serializers
from rest_framework.settings import api_settings

from crmseg_site.untrusted_json import nul_paths

NUL_MESSAGE = "Text may not contain NUL characters."


def input_problems(
    data: dict, writable: Set[str], *, read_only: Set[str] = frozenset(), nul_checked: Set[str] = frozenset()
) -> dict[str, list[str]]:
    """{field or JSON path: [message]} for unknown or read-only fields and texts containing NUL
    (outside the `nul_checked` fields, which report their own)."""
    errors: dict[str, list[str]] = {}
    for key in data:
        if key in read_only:
            errors[str(key)] = [f"{key!r} is read-only; leave it out."]
        elif key not in writable:
            listed = ", ".join(sorted(writable))
            errors[str(key)] = [f"Unknown field {key!r}; this endpoint takes: {listed}."]
    for path in nul_paths({k: v for k, v in data.items() if k in writable and k not in nul_checked}):
        errors.setdefault(path or api_settings.NON_FIELD_ERRORS_KEY, []).append(NUL_MESSAGE)
    return errors


# The JSON type each kind of field takes, as the schema documents it (checked in this order).
_JSON_TYPES: list[tuple[type, tuple[type, ...], str]] = [
    (serializers.BooleanField, (bool,), "true or false"),
    (serializers.IntegerField, (int,), "a whole number"),
    (serializers.PrimaryKeyRelatedField, (int,), "an id (a whole number)"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.DecimalField, (str,), 'an amount as text, e.g. "1200.50"'),
    (serializers.ManyRelatedField, (list,), "a list"),
    (serializers.ListField, (list,), "a list"),
    (serializers.CharField, (str,), "text"),
    (serializers.ChoiceField, (str,), "text"),
    (serializers.DateField, (str,), "a date as text (YYYY-MM-DD)"),
    (serializers.DateTimeField, (str,), "a date-time as text (ISO 8601)"),
    (serializers.RelatedField, (str,), "text"),
]


def type_problem(field: serializers.Field, value: object) -> str | None:
    if value is None:
        return None  # null: the field's own allow_null decides
    if value == "" and isinstance(field, serializers.RelatedField):
        return "Give the related object's slug or id, or null."  # DRF would read "" as null
    for field_class, types, wanted in _JSON_TYPES:
        if isinstance(field, field_class):
            if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
                return None
            return f"Expected {wanted}, got {type(value).__name__}."
    return None


def length_problem(field: serializers.Field, value: object) -> str | None:
    """Text longer than the field's documented maxLength, counted as sent: DRF counts after trimming
    surrounding spaces, so 199 letters and two spaces passed where the schema says at most 200."""
    limit = getattr(field, "max_length", None)
    if isinstance(field, serializers.CharField) and limit and isinstance(value, str) and len(value) > limit:
        return f"Ensure this field has no more than {limit} characters (surrounding spaces count); it has {len(value)}."
    return None


class StrictInput(serializers.Serializer):
    """Mixed into every serializer that reads a request body (before serializers.Serializer).

    `nul_checked_by` names fields whose own validation reports NUL characters (a rule: by its JSON path).
    """

    nul_checked_by: frozenset[str] = frozenset()

    def to_internal_value(self, data):
        if isinstance(data, dict):
            fields = self.fields
            writable = {name for name, field in fields.items() if not field.read_only}
            errors = input_problems(data, writable, read_only=set(fields) - writable, nul_checked=self.nul_checked_by)
            for name in writable & set(data):
                problem = type_problem(fields[name], data[name]) or length_problem(fields[name], data[name])
                if problem and name not in errors:
                    errors[name] = [problem]
            if errors:
                raise serializers.ValidationError(self._with_other_errors(data, errors))
        return super().to_internal_value(data)

    def _with_other_errors(self, data: dict, errors: dict[str, list[str]]) -> dict:
        """`errors` plus what the other fields would answer, in the serializer's field order."""
        refused = {_field_of(path) for path in errors}
        rest = {key: value for key, value in data.items() if key in self.fields and key not in refused}
        found: dict[str, object] = dict(errors)
        try:  # (a refused value never reaches a field: it might reach the database)
            super().to_internal_value(rest)
        except serializers.ValidationError as error:
            if isinstance(error.detail, dict):
                for name, detail in error.detail.items():
                    found.setdefault(name, detail)
        order = {name: index for index, name in enumerate(self.fields)}
        return dict(sorted(found.items(), key=lambda item: order.get(_field_of(item[0]), -1)))


def _field_of(path: str) -> str:
    """The top-level field of a JSON path: `properties.plan` and `interests[1]` are in their field."""
    return path.split(".")[0].split("[")[0]
