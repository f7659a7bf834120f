"""Benchmark: what the analytics dirty-hour trigger (segments migration 0018) adds to a bulk
INSERT ... SELECT of activities on PostgreSQL.

In a database of its own (the name must contain "bench"; contacts and a first million activities
are generated when it has no contact), each round inserts `--rows` activities with the bench
generator's columns (`devtools.generate.insert_series`, 540 days of arrival-ordered times) under
EXPLAIN ANALYZE, which times every trigger of the statement, then rolls back and vacuums.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmseg_x_bench python manage.py bench_analytics_triggers
"""

from __future__ import annotations

import json
import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from contacts.models import Activity, Company, Contact
from devtools.generate import insert_series, settle
from devtools.segment_bench import COMPANY_COLUMNS, activity_columns, contact_columns

CONTACTS = 100_000
OURS = "segments_analyticsdirtyhour_"


class RolledBack(Exception):
    """Leaves the round's transaction, undoing its insert."""


class Command(BaseCommand):
    help = "Time the analytics dirty-hour trigger within a bulk activity insert (PostgreSQL)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--rows", type=int, default=1_000_000)
        parser.add_argument("--rounds", type=int, default=3)

    def handle(self, *args, rows: int, rounds: int, **options) -> None:
        if connection.vendor != "postgresql" or "bench" not in connection.settings_dict["NAME"]:
            raise CommandError("DATABASE_URL: a PostgreSQL database whose name contains 'bench' (it writes)")
        if not Contact.objects.exists():
            insert_series(Company, COMPANY_COLUMNS, CONTACTS // 20)
            insert_series(Contact, contact_columns(CONTACTS // 20), CONTACTS)
            insert_series(Activity, activity_columns(CONTACTS, 1_000_000), 1_000_000)
            settle(Company, Contact, Activity)
        for _ in range(rounds):
            plan = self._explained_insert(rows)
            total = plan["Execution Time"] / 1000
            triggers = {row["Trigger Name"]: row["Time"] / 1000 for row in plan.get("Triggers", [])}
            ours = sum(seconds for name, seconds in triggers.items() if name.startswith(OURS))
            others = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in sorted(triggers.items()))
            self.stdout.write(
                f"{rows} activities: {total:.2f} s, of which the dirty-hour trigger {ours:.3f} s "
                f"({100 * ours / total:.1f}%); triggers: {others}; load {os.getloadavg()[0]:.2f}"
            )

    def _explained_insert(self, rows: int) -> dict:
        plans: list = []

        def explain(execute, sql, params, many, context):
            if not sql.startswith("INSERT INTO"):
                return execute(sql, params, many, context)
            execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params, many, context)
            plans.append(context["cursor"].fetchone()[0])
            return None

        try:
            with transaction.atomic(), connection.execute_wrapper(explain):
                insert_series(Activity, activity_columns(CONTACTS, rows), rows)
                raise RolledBack
        except RolledBack:
            pass
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM {Activity._meta.db_table}")  # the rolled-back rows, before the next round
        plan = plans[-1]
        return (plan if isinstance(plan, list) else json.loads(plan))[0]
