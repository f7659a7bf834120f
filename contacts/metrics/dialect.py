"""The few SQL spellings that differ between PostgreSQL and SQLite, for the metrics statements.

Everything else in contacts/metrics/sql.py is SQL both databases read the same way (window
functions, CTEs, INSERT ... ON CONFLICT, UPDATE ... FROM). POWER is native on PostgreSQL and on
SQLite builds with math functions; Django registers it on SQLite builds without them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    vendor: str

    @property
    def postgres(self) -> bool:
        return self.vendor == "postgresql"

    def age_days(self, column: str) -> str:
        """Fractional days from the as-of time back to `column` (a datetime)."""
        if self.postgres:
            return f"((%(as_of_epoch)s - date_part('epoch', {column})) / 86400.0)"
        return f"(julianday(%(as_of)s) - julianday({column}))"

    def whole_days(self, later: str, earlier: str) -> str:
        """Whole days (rounded down, whole seconds) between two datetimes."""
        if self.postgres:
            return f"CAST(FLOOR((date_part('epoch', {later}) - date_part('epoch', {earlier})) / 86400.0) AS INTEGER)"
        return f"((CAST(strftime('%%s', {later}) AS INTEGER) - CAST(strftime('%%s', {earlier}) AS INTEGER)) / 86400)"

    def date_days(self, later: str, earlier: str) -> str:
        """Days between two dates (negative when `later` is earlier)."""
        if self.postgres:
            return f"({later} - {earlier})"
        return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"

    @property
    def joined(self) -> str:
        """Between `name AS` and the body of a CTE that the statement joins by contact: SQLite then
        computes it once and joins its rows through an automatic index. Without it, a full run on
        the 2,000 demo contacts took 3.6-4.5 s instead of 1.1-1.6 s (the lists joined to the
        ranked rows). PostgreSQL materializes or inlines CTEs well on its own."""
        return "" if self.postgres else "MATERIALIZED"

    @property
    def fence(self) -> str:
        """Ends a subquery that the planner must not merge into its parent."""
        return "OFFSET 0" if self.postgres else "LIMIT -1 OFFSET 0"

    def as_date(self, param: str) -> str:
        return f"CAST({param} AS DATE)" if self.postgres else param

    def round(self, expression: str, digits: int) -> str:
        if self.postgres:
            return f"CAST(ROUND(CAST({expression} AS NUMERIC), {digits}) AS DOUBLE PRECISION)"
        return f"ROUND({expression}, {digits})"

    def least(self, *expressions: str) -> str:
        return f"{'LEAST' if self.postgres else 'MIN'}({', '.join(expressions)})"

    def greatest(self, *expressions: str) -> str:
        return f"{'GREATEST' if self.postgres else 'MAX'}({', '.join(expressions)})"

    def id_in(self, column: str) -> str:
        """`column` is one of the ids passed as a JSON list in %(ids)s."""
        if self.postgres:
            return f"{column} IN (SELECT CAST(value AS BIGINT) FROM jsonb_array_elements_text(CAST(%(ids)s AS jsonb)))"
        return f"{column} IN (SELECT value FROM json_each(%(ids)s))"

    # JSON building (jsonb on PostgreSQL, JSON text on SQLite).
    @property
    def json_array_agg(self) -> str:
        return "jsonb_agg" if self.postgres else "json_group_array"

    @property
    def json_object_agg(self) -> str:
        return "jsonb_object_agg" if self.postgres else "json_group_object"

    @property
    def json_object(self) -> str:
        return "jsonb_build_object" if self.postgres else "json_object"

    def json_bool(self, condition: str) -> str:
        if self.postgres:
            return f"({condition})"
        return f"json(CASE WHEN {condition} THEN 'true' ELSE 'false' END)"

    @property
    def empty_list(self) -> str:
        return "CAST('[]' AS jsonb)" if self.postgres else "'[]'"

    @property
    def empty_object(self) -> str:
        return "CAST('{}' AS jsonb)" if self.postgres else "'{}'"
