"""SQL building blocks the compiler needs beyond the stock ORM, each for PostgreSQL and SQLite.

Public: `Fold`, `PropertyValue`, `TagList`, `HasTag`, `PercentThreshold`, `AmongContacts`, `fold`.

- `Fold`: lower-case text for case-insensitive comparison. SQLite's own LOWER() only knows
  ASCII, so on SQLite it calls a function that uses Python's `str.lower` (the same `fold` the
  explainer uses), registered on every SQLite connection as it opens (`register_sqlite_functions`,
  connected in segments/apps.py): a statement compiled once and cached runs on later connections
  too. PostgreSQL's LOWER() is Unicode-aware.
- `PropertyValue`: `Contact.properties[key]` as SQL of the property's type. A value whose JSON
  type does not fit the definition reads as NULL (missing), never as an error.
- `TagList` / `HasTag`: a JSON tag list (NULL unless it is an array) and "one of its text tags,
  lower-cased, is in this set": on SQLite a correlated EXISTS over its elements, on PostgreSQL
  the lower-cased list's `?|` (the same answer, one expression per row).
- `PercentThreshold`: the value a contact needs to be in the top (or bottom) P% of contacts with a
  set value: one uncorrelated subquery, ORDER BY value LIMIT 1 OFFSET ceil(P% of n) - 1.
- `AmongContacts`: the contact is one of a set of contact ids (e.g. grouped activities), as
  EXISTS over the set as a derived table; negated, PostgreSQL plans it as an anti-join.
"""

from __future__ import annotations

from django.db.models import (
    BooleanField,
    CharField,
    Expression,
    F,
    FloatField,
    Func,
    JSONField,
    Q,
    QuerySet,
    Subquery,
)
from django.db.utils import NotSupportedError

from contacts.models import Contact

_SQLITE_LOWER = "CRMSEG_LOWER"


def fold(value: str) -> str:
    """How every text comparison in rules lower-cases, in Python and (via Fold) in SQL."""
    return value.lower()


def _sqlite_lower(value: object) -> object:
    return fold(value) if isinstance(value, str) else value


def register_sqlite_functions(sender, connection, **kwargs) -> None:
    """connection_created: give each new SQLite connection the functions rules compile to."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(_SQLITE_LOWER, 1, _sqlite_lower, deterministic=True)


class Fold(Func):
    function = "LOWER"
    output_field = CharField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, function=_SQLITE_LOWER, **extra_context)


class _VendorFunc(Func):
    def as_sql(self, compiler, connection, function=None, template=None, arg_joiner=None, **extra_context):
        raise NotSupportedError(f"{type(self).__name__} supports PostgreSQL and SQLite only.")


_PROPERTY_OUTPUT = {
    "text": CharField,
    "choice": CharField,
    "date": CharField,
    "number": FloatField,
    "bool": BooleanField,
    "tags": JSONField,
}
_PG_JSON_TYPE = {"text": "string", "choice": "string", "date": "string", "number": "number", "bool": "boolean"}
_PG_CAST = {"number": "::double precision", "bool": "::boolean"}
_SQLITE_JSON_TYPES = {
    "text": "('text')",
    "choice": "('text')",
    "date": "('text')",
    "number": "('integer', 'real')",
    "tags": "('array')",
}


class PropertyValue(_VendorFunc):
    """Contact.properties[key] typed as the PropertyDefinition says; NULL when absent or ill-typed."""

    def __init__(self, key: str, type: str) -> None:
        super().__init__(F("properties"), output_field=_PROPERTY_OUTPUT[type]())
        self.key, self.type = key, type

    def as_postgresql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        value = f"({column} -> %s)"
        if self.type == "tags":
            return f"(CASE WHEN jsonb_typeof({value}) = 'array' THEN {value} END)", (*params, self.key) * 2
        text = f"({column} ->> %s)"
        if self.type == "date":
            text = f'({text} COLLATE "C")'  # ISO dates sort as bytes, whatever the database collation
        json_type, cast = _PG_JSON_TYPE[self.type], _PG_CAST.get(self.type, "")
        sql = f"(CASE WHEN jsonb_typeof({value}) = '{json_type}' THEN {text}{cast} END)"
        return sql, (*params, self.key) * 2

    def as_sqlite(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        path = f'$."{self.key}"'  # keys are [a-z][a-z0-9_]*, so quoting needs no escaping
        if self.type == "bool":
            sql = f"(CASE json_type({column}, %s) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"
            return sql, (*params, path)
        types = _SQLITE_JSON_TYPES[self.type]
        sql = f"(CASE WHEN json_type({column}, %s) IN {types} THEN json_extract({column}, %s) END)"
        return sql, (*params, path) * 2


class TagList(_VendorFunc):
    """A JSON tag-list column, or NULL when it holds anything but an array."""

    output_field = JSONField()

    def as_postgresql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        return f"(CASE WHEN jsonb_typeof({column}) = 'array' THEN {column} END)", (*params, *params)

    def as_sqlite(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        return f"(CASE WHEN json_type({column}) = 'array' THEN {column} END)", (*params, *params)


class HasTag(_VendorFunc):
    """True when one of the list's text tags, lower-cased, is one of `tags` (already folded)."""

    output_field = BooleanField()

    def __init__(self, tag_list: Expression, tags: list[str]) -> None:
        super().__init__(tag_list)
        self.tags = sorted(set(tags))

    def as_postgresql(self, compiler, connection, **extra_context):
        # LOWER() of the list's JSON text lower-cases the text of every string in it and nothing a
        # top-level `?|` reads besides (escapes, numbers and nesting stay as they were), so this
        # is "some string element, lower-cased, is one of the tags" without unpacking the list
        # row by row (several times faster on a scan of every contact). NULL (no list) is false.
        tag_list, params = compiler.compile(self.source_expressions[0])
        marks = ", ".join(["%s"] * len(self.tags))
        sql = f"COALESCE(LOWER(({tag_list})::text)::jsonb ?| ARRAY[{marks}]::text[], false)"
        return sql, (*params, *self.tags)

    def as_sqlite(self, compiler, connection, **extra_context):
        tag_list, params = compiler.compile(self.source_expressions[0])
        marks = ", ".join(["%s"] * len(self.tags))
        sql = (
            f"EXISTS (SELECT 1 FROM json_each({tag_list}) AS tag "
            f"WHERE tag.type = 'text' AND {_SQLITE_LOWER}(tag.value) IN ({marks}))"
        )
        return sql, (*params, *self.tags)


class PercentThreshold(Expression):
    """The P-th percent value from the top (or bottom) among contacts whose `value` is set.

    With the n set values sorted (descending for top), the threshold is the m-th of them, m =
    ceil(P * n / 100): exactly the contacts with fewer than P% of values strictly better than
    theirs reach it, ties included. P has at most 2 decimals, so integer arithmetic gives m.
    """

    def __init__(self, value: Expression, is_set: Q, percent: float, *, top: bool, output_field) -> None:
        super().__init__(output_field=output_field)
        self.value, self.is_set, self.top = value, is_set, top
        self.hundredths = round(percent * 100)

    def as_sql(self, compiler, connection, **extra_context):
        population = Contact.objects.filter(self.is_set).annotate(threshold_value=self.value)
        order = F("threshold_value").desc() if self.top else F("threshold_value").asc()
        ordered = population.order_by(order).values("threshold_value").query
        values_sql, values_params = ordered.get_compiler(connection=connection).as_sql()
        counted = population.order_by().values("threshold_value").query
        count_sql, count_params = counted.get_compiler(connection=connection).as_sql()
        offset = (
            f"SELECT CASE WHEN COUNT(*) > 0 THEN ({self.hundredths} * COUNT(*) + 9999) / 10000 - 1 ELSE 0 END "
            f"FROM ({count_sql}) AS population"
        )
        return f"({values_sql} LIMIT 1 OFFSET ({offset}))", (*values_params, *count_params)


class AmongContacts(Subquery):
    """The contact's id is among `contacts`, a queryset selecting contact ids as `member`.

    `EXISTS (SELECT 1 FROM (<contacts>) AS among WHERE among.member = <the contact's id>)`.
    PostgreSQL turns EXISTS into a semi-join and NOT EXISTS into an anti-join (where they sit in
    ANDs): the set is computed once, whatever statistics the planner has, since a derived table
    that groups cannot be probed contact by contact. `NOT (id IN (...))` would stay a subplan,
    hashed only while the set fits work_mem and else rescanned for every contact.
    """

    template = "EXISTS (SELECT 1 FROM (%(subquery)s) AS among WHERE among.member = %(contact)s)"
    output_field = BooleanField()
    empty_result_set_value = False

    def __init__(self, contacts: QuerySet) -> None:
        super().__init__(contacts)
        self.contact = F("pk")  # the outer query's contact, once resolved

    def get_source_expressions(self) -> list:
        return [self.query, self.contact]

    def set_source_expressions(self, exprs) -> None:
        self.query, self.contact = exprs

    def as_sql(self, compiler, connection, template=None, **extra_context):
        contact, contact_params = compiler.compile(self.contact)
        sql, params = super().as_sql(compiler, connection, template, contact=contact, **extra_context)
        return sql, (*params, *contact_params)
