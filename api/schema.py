"""OpenAPI: document the bearer key and the error responses every operation can give."""

from __future__ import annotations

import copy

import pycountry
from django.db import DatabaseError
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from activation.models import CSV_COLUMNS
from api.serializers.errors import ErrorSerializer
from contacts.models import PropertyDefinition, PropertyType


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
    "404": "No such object or endpoint, or no page with this cursor",
    "405": "Method not allowed on this endpoint",
    "409": "Conflicts with stored data: a unique value already taken, a referenced object (segment slug,"
    " destination, owner, parent) that does not exist, an object still in use, or a change the object's kind"
    " does not allow (members of a segment that is not static, a disabled activation)",
    "413": "Body over DATA_UPLOAD_MAX_MEMORY_SIZE (10 MiB by default) or, in a bulk request, over 10,000 rows;"
    " the limit is in details.limit",
    "415": "Body is not application/json",
    "429": "Too many requests for this key; retry after the Retry-After header's seconds",
}


class ApiAutoSchema(AutoSchema):
    """Adds the shared error responses to every operation."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = ["400", "401", "403", "404", "405", "429"]
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            codes.append("409")
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["413", "415"]
        for code in codes:
            responses.setdefault(code, self._get_response_for_code(ErrorSerializer, code, direction=direction))
            responses[code]["description"] = ERROR_DESCRIPTIONS[code]
        return responses


# Sent as an ISO 3166-1 alpha-2 code (or, accepted too, an alpha-3 code or an English name: see
# contacts.normalize.country); always answered as the alpha-2 code.
_COUNTRY = {
    "enum": ["", *sorted(country.alpha_2 for country in pycountry.countries)],
    "description": "ISO 3166-1 alpha-2 code, e.g. DE (alpha-3 codes and English names are read too)",
}
_TAGS = {"type": "array", "items": {"type": "string"}, "description": "Tags (texts)"}
_LETTERS_DIGITS = "[A-Za-z0-9]"
_LABEL = f"{_LETTERS_DIGITS}(?:[A-Za-z0-9-]{{0,61}}{_LETTERS_DIGITS})?"
# What the models' JSON fields and text validators accept, for the schema (DRF sees plain JSON and text).
FIELD_SCHEMAS: dict[str, dict[str, dict]] = {
    "Contact": {
        "interests": _TAGS,
        "values": _TAGS,
        "technologies": _TAGS,
        "properties": {
            "type": "object",
            "additionalProperties": True,
            "description": "Custom properties: each key declared by a property definition, its value of that type",
        },
        "phone": {"pattern": r"^(\+[1-9][0-9]{6,14})?$"},
        "country": _COUNTRY,
    },
    "Company": {
        "technologies": _TAGS,
        "country": _COUNTRY,
        "domain": {"pattern": f"^{_LABEL}(?:\\.{_LABEL})+$", "description": "A domain name, e.g. acme.com"},
    },
    "PropertyDefinition": {
        "key": {"pattern": "^[a-z][a-z0-9_]{0,62}$"},
        "choices": {"type": "array", "items": {"type": "string"}, "description": "Allowed values (choice type)"},
    },
    "Destination": {
        "csv_columns": {
            "type": "array",
            "items": {"type": "string", "enum": list(CSV_COLUMNS)},
            "uniqueItems": True,
            "description": "CSV only: the columns, in order",
        }
    },
    "Rule": {"rule": {"type": "object", "description": "A rule in the segment rule language"}},
    "PreviewRequest": {"rule": {"type": "object", "description": "A rule in the segment rule language"}},
    "Segment": {
        "rule": {
            "type": "object",
            "nullable": True,
            "description": "Rule in the segment rule language; required for dynamic and suppression segments,"
            " null for static ones. Check one with POST /segments/validate/.",
        }
    },
}


_AMOUNT = {"pattern": r"^(\d{1,12}(\.\d{1,2})?)?$", "description": 'An amount of at least 0 as text, e.g. "1200.50"'}
# Dates a CRM record can have (contacts.models.validate_plausible_year): years 1900 to 2100.
_PLAUSIBLE_DATE = {"pattern": "^(19[0-9]{2}|20[0-9]{2}|2100)-", "description": "A date in the years 1900 to 2100"}
FIELD_SCHEMAS["Contact"] |= {
    "estimated_deal_size": _AMOUNT,
    "lifetime_value": _AMOUNT,
    "customer_since": _PLAUSIBLE_DATE,
    "renewal_date": _PLAUSIBLE_DATE,
}
FIELD_SCHEMAS["Company"] |= {"annual_revenue": _AMOUNT}
NO_NUL = "^[^\\u0000]*$"  # PostgreSQL cannot store a NUL character; the server refuses one by name
# A required text is trimmed and then may not be blank: it needs one character that is not a space.
NOT_BLANK = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"


def _property_schemas() -> dict:
    """Contact.properties as the declared PropertyDefinitions allow (read when the schema is built)."""
    by_type: dict[str, dict] = {
        PropertyType.TEXT: {"type": "string", "pattern": NO_NUL},
        PropertyType.NUMBER: {"type": "number"},
        PropertyType.BOOL: {"type": "boolean"},
        PropertyType.DATE: {"type": "string", "format": "date"},
        PropertyType.TAGS: {"type": "array", "items": {"type": "string", "pattern": NO_NUL}},
    }
    try:
        definitions = list(PropertyDefinition.objects.order_by("key"))
    except DatabaseError:  # no database (a schema made offline): keys unknown
        return {"type": "object", "description": "Custom properties, each declared by a property definition"}
    properties = {}
    for definition in definitions:
        schema = by_type.get(definition.type) or {"enum": [*definition.choices, None]}
        properties[definition.key] = {**schema, "nullable": True, "description": definition.label}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _forbid_nul(schema: object) -> None:
    """Every free text in a request schema refuses NUL (walks nested objects and arrays)."""
    pending = [schema]
    while pending:
        node = pending.pop()
        if not isinstance(node, dict):
            continue
        if node.get("type") == "string" and not ({"pattern", "enum", "format"} & node.keys()):
            node["pattern"] = NOT_BLANK if node.get("minLength", 0) >= 1 else NO_NUL
        pending.extend(node.get("properties", {}).values())
        pending.extend(v for k, v in node.items() if k in ("items", "additionalProperties"))
        pending.extend(node.get("oneOf", []) + node.get("anyOf", []) + node.get("allOf", []))


# Links that do not follow from the paths: an export run started by POST .../run/ is read at /export-runs/.
EXTRA_LINKS = {"/api/v1/activations/{id}/run/": ("202", "/api/v1/export-runs/{id}")}


def _add_links(paths: dict) -> None:
    """Stateful testing and clients: what a create answers leads to the object's own operations."""
    for source, (code, prefix) in EXTRA_LINKS.items():
        answer = paths.get(source, {}).get("post", {}).get("responses", {}).get(code)
        for detail, detail_operations in paths.items() if answer else ():
            if detail.startswith(prefix):
                for operation in detail_operations.values():
                    values = {"id": "$response.body#/id"}
                    link = {"operationId": operation["operationId"], "parameters": values}
                    answer.setdefault("links", {})[operation["operationId"]] = link
    for path, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if not created or not path.endswith("/"):
            continue
        for detail, detail_operations in paths.items():
            rest = detail.removeprefix(path)
            if detail == path or not rest.startswith("{"):
                continue
            parameter = rest[1 : rest.index("}")]
            for operation in detail_operations.values():
                values = {parameter: f"$response.body#/{parameter}"}
                link = {"operationId": operation["operationId"], "parameters": values}
                created.setdefault("links", {})[operation["operationId"]] = link


def tighten_components(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: request bodies refuse fields they do not list (the server refuses them
    too), the JSON and pattern-checked fields get the shape the server checks, texts refuse NUL,
    optional query parameters may be empty (the same as absent, api/middleware.py), and creates
    link to the created object's operations."""
    schemas = result.get("components", {}).get("schemas", {})
    for name, component in schemas.items():
        base = name.removeprefix("Patched").removesuffix("Request")
        for field, extra in FIELD_SCHEMAS.get(base, {}).items():
            if field in component.get("properties", {}):
                component["properties"][field].update(copy.deepcopy(extra))
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
            if "properties" in component.get("properties", {}) and base == "Contact":
                component["properties"]["properties"] = _property_schemas()
            _forbid_nul(component)
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query":
                    _forbid_nul(parameter.get("schema"))
                    if not parameter.get("required"):
                        parameter["allowEmptyValue"] = True
    _add_links(result.get("paths", {}))
    return result
