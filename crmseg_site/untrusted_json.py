"""JSON from outside (API bodies, the rule builder, admin forms): its depth is checked before
anything recurses into it, and NUL characters, which PostgreSQL cannot store, are found by path.

Python's JSON decoder and every walker of the result recurse once per level; a body nested a few
hundred levels deep would exhaust the interpreter's stack somewhere and end as a 500. So the
nesting is measured first, with regular expressions and a loop over the brackets alone, and a
document deeper than MAX_JSON_DEPTH is refused, naming the path where it goes too deep.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, TypeGuard

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

MAX_JSON_DEPTH = 64  # a rule at the rule language's 20 groups needs at most 45 levels in a body
NUL = "\x00"

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')


class JsonTooDeep(ValueError):
    """The document nests more than MAX_JSON_DEPTH levels; `path` is the first value past the limit."""

    def __init__(self, path: str) -> None:
        self.path = path
        where = f" at {path}" if path else ""
        super().__init__(
            f"JSON nests deeper than {MAX_JSON_DEPTH} levels{where}; segment rules nest at most 20 groups."
        )


def join_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def check_depth(text: str) -> None:
    """Raise JsonTooDeep if the JSON `text` nests deeper than MAX_JSON_DEPTH; never recurses."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # fewer openings than the limit: no need to look further (most single-object bodies)
    depth = peak = 0
    for bracket in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            peak = max(peak, depth)
        else:
            depth -= 1
    if peak > MAX_JSON_DEPTH:
        raise JsonTooDeep(_path_past_limit(text))


def _path_past_limit(text: str) -> str:
    """The path of the first container opened past the limit (only called when there is one)."""
    stack: list[list] = []  # [opening bracket, current key or index]
    last_string = ""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            last_string = token
        elif token in "[{":
            if len(stack) == MAX_JSON_DEPTH:
                break
            stack.append([token, 0 if token == "[" else ""])
        elif not stack:
            continue
        elif token == ":":
            stack[-1][1] = json.loads(last_string)
        elif token == ",":
            if stack[-1][0] == "[":
                stack[-1][1] += 1
        else:
            stack.pop()
    path = ""
    for _bracket, key in stack:
        path = join_path(path, key)
    return path


def loads(text: str | bytes) -> object:
    """json.loads once the depth is known to be within MAX_JSON_DEPTH (JsonTooDeep otherwise)."""
    if isinstance(text, bytes):
        text = text.decode()
    check_depth(text)
    return json.loads(text)


def nul_paths(value: object, path: str = "") -> Iterator[str]:
    """Paths of the texts in `value` that contain a NUL; a NUL in an object's key yields the object.

    Walks with a stack, not recursion, so it is safe on any structure (within the depth limit or not).
    """
    if _flat_texts(value) and not any(NUL in k or NUL in v for k, v in value.items()):
        return  # a flat object of texts (a file's row) without a NUL, as most: one look at each text
    # (path of the parent, key in it or None for `value` itself, item): an item's own path is only
    # built when it is needed (a NUL found, or children to visit), since most items are short texts.
    stack: list[tuple[str, str | int | None, object]] = [(path, None, value)]
    while stack:
        parent, key, item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                yield parent if key is None else join_path(parent, key)
        elif isinstance(item, dict):
            where = parent if key is None else join_path(parent, key)
            if any(isinstance(name, str) and NUL in name for name in item):
                yield where
            stack.extend((where, str(name), child) for name, child in reversed(item.items()))
        elif isinstance(item, list | tuple):
            where = parent if key is None else join_path(parent, key)
            stack.extend((where, index, child) for index, child in reversed(list(enumerate(item))))


def _flat_texts(value: object) -> TypeGuard[dict[str, str]]:
    return isinstance(value, dict) and all(type(k) is str and type(v) is str for k, v in value.items())


class JSONFormField(forms.JSONField):
    """forms.JSONField that checks the depth before decoding and refuses NUL characters."""

    def to_python(self, value):
        if isinstance(value, str):
            try:
                check_depth(value)
            except JsonTooDeep as error:
                raise ValidationError(str(error), code="too_deep") from None
        converted = super().to_python(value)
        found = next(nul_paths(converted), None)
        if found is not None:
            where = f" (at {found})" if found else ""
            raise ValidationError(f"Text may not contain NUL characters{where}.", code="null_characters")
        return converted

    def bound_data(self, data, initial):
        if isinstance(data, str):
            try:
                check_depth(data)
            except JsonTooDeep:
                return forms.fields.InvalidJSONInput(data)
        return super().bound_data(data, initial)


class UntrustedJSONAdmin:
    """Mixed into every ModelAdmin and inline that edits a JSON field (before admin.ModelAdmin):
    its form fields check the depth before decoding and refuse NUL characters, so a pasted document
    nested a thousand levels deep, or a NUL in a tag, is a form error instead of a 500."""

    formfield_overrides: ClassVar[Mapping[type[models.Field[Any, Any]], Mapping[str, Any]]] = {
        models.JSONField: {"form_class": JSONFormField}
    }
