"""A model's own field by name, typed as a field (Options.get_field also answers reverse relations)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models


def concrete_field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise FieldDoesNotExist(f"{model.__name__}.{name} is the far side of a relation, not a field of its own.")
    return field


def verbose_name(model: type[models.Model], name: str) -> str:
    return str(concrete_field(model, name).verbose_name)


def column(model: type[models.Model], name: str) -> str:
    found = concrete_field(model, name).column
    if found is None:
        raise FieldDoesNotExist(f"{model.__name__}.{name} has no column of its own.")
    return found
