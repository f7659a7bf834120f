"""python manage.py bench_metrics: time compute_metrics on generated data (PostgreSQL).

Generates contacts and activities set-based with generate_series (one INSERT each), then times a
full compute_metrics (twice: the second replaces the rows of the first) and an incremental run for
100 contacts, printing durations, the time of each step and the process's peak RSS. With --incremental-only it
skips the full runs and times only the incremental one against the metrics already stored. It deletes every contact in
the database it runs against, so it only runs on a database whose name contains "bench"
(e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmseg_benchm).
"""

from __future__ import annotations

import json
import resource
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models

from contacts.metrics.compute import MetricsSummary, compute_metrics
from contacts.models import Activity, ActivityKind, Contact, ContactMetrics

TOPICS = ["cloud-migration", "cybersecurity", "data-platform", "finops", "devops", "ai", "compliance", ""]
PRODUCTS = ["vault", "gateway", "insights", "edge", ""]
# Kinds drawn with these relative frequencies (a typical marketing activity stream).
KIND_MIX = [
    (ActivityKind.EMAIL_OPEN, 30),
    (ActivityKind.EMAIL_CLICK, 10),
    (ActivityKind.SITE_VISIT, 15),
    (ActivityKind.PAGE_VIEW, 25),
    (ActivityKind.CONTENT_DOWNLOAD, 4),
    (ActivityKind.FORM_SUBMIT, 2),
    (ActivityKind.WEBINAR_ATTEND, 1),
    (ActivityKind.PRICING_VIEW, 3),
    (ActivityKind.FEATURE_COMPARISON, 2),
    (ActivityKind.DEMO_REQUEST, 1),
    (ActivityKind.PURCHASE, 3),
    (ActivityKind.SUPPORT_TICKET_OPENED, 2),
    (ActivityKind.SUPPORT_TICKET_CLOSED, 1),
    (ActivityKind.SALES_TOUCH, 1),
]
STAGES = ["subscriber", "lead", "mql", "sql", "opportunity", "customer", "evangelist", "other"]


def _sql_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + value.replace("'", "''") + "'" for value in values) + "]"


def _contact_columns() -> tuple[list[str], list[str]]:
    """Column names and generate_series expressions (over `g`) for every non-null Contact column."""
    special = {
        "email": "'bench' || g || '@bench.example'",
        "first_name": "'Bench'",
        "last_name": "'Contact ' || g",
        "country": "'US'",
        "lifecycle_stage": f"({_sql_array(STAGES)})[1 + (g %% {len(STAGES)})]",
        "lifecycle_changed_at": "now() - (g %% 700) * interval '1 day'",
        "customer_since": "CASE WHEN g %% 8 IN (5, 6) THEN current_date - (g %% 1500) END",
        "renewal_date": "CASE WHEN g %% 8 IN (5, 6) THEN current_date + (g %% 365) END",
        "product_adoption": "CASE WHEN g %% 8 IN (5, 6) THEN g %% 101 END",
        "lead_score": "g %% 100",
        "email_status": "'valid'",
    }
    columns, expressions = [], []
    for field in Contact._meta.concrete_fields:
        if field.primary_key:
            continue
        if field.name in special:
            expression = special[field.name]
        elif field.null:
            continue
        elif isinstance(field, models.JSONField):
            expression = "'{}'::jsonb" if field.name == "properties" else "'[]'::jsonb"
        elif isinstance(field, models.BooleanField):
            expression = "false"
        elif isinstance(field, models.DateTimeField):
            expression = "now()"
        elif isinstance(field, models.IntegerField | models.DecimalField | models.FloatField):
            expression = "0"
        else:
            expression = "''"
        columns.append(field.column)
        expressions.append(expression)
    return columns, expressions


def _kind_expression() -> str:
    """A kind picked by a uniform random number r in [0, total) against cumulative weights."""
    total = sum(weight for _, weight in KIND_MIX)
    branches, running = [], 0
    for kind, weight in KIND_MIX:
        running += weight
        branches.append(f"WHEN r < {running} THEN '{kind}'")
    return f"CASE {' '.join(branches)} END", total


class Command(BaseCommand):
    help = "Benchmark compute_metrics on generated data (PostgreSQL; database name must contain 'bench')."

    def add_arguments(self, parser):
        parser.add_argument("--contacts", type=int, default=1_000_000)
        parser.add_argument("--activities", type=int, default=10_000_000)
        parser.add_argument("--reuse", action="store_true", help="Keep existing data when the counts match")
        parser.add_argument("--json", help="Also write the figures to this JSON file")
        parser.add_argument(
            "--incremental-only",
            action="store_true",
            help="Skip the full runs; time the incremental run against the metrics already stored",
        )

    def handle(self, *args, contacts: int, activities: int, reuse: bool, incremental_only: bool, **options):
        if connection.vendor != "postgresql":
            raise CommandError("bench_metrics runs on PostgreSQL (set DATABASE_URL=postgres://...).")
        name = connection.settings_dict["NAME"]
        if "bench" not in name:
            raise CommandError(f"bench_metrics deletes all contacts; run it on a database named *bench*, not {name!r}.")
        figures: dict[str, object] = {"contacts": contacts, "activities": activities}
        have = (Contact.objects.count(), Activity.objects.count())
        if reuse and have == (contacts, activities):
            self.stdout.write(f"Reusing {contacts:,} contacts and {activities:,} activities.")
        else:
            figures["generate_s"] = self.generate(contacts, activities)
        if incremental_only and not ContactMetrics.objects.exists():
            raise CommandError("--incremental-only needs stored metrics: run bench_metrics once without it.")
        for label in [] if incremental_only else ["full_first_s", "full_again_s"]:
            started = time.monotonic()
            summary = compute_metrics()
            figures[label] = round(time.monotonic() - started, 2)
            figures["future_activities_ignored"] = summary.future_activities_ignored
            self.stdout.write(f"{label}: {figures[label]} s  ({summary})")
            self.report_steps(figures, label, summary)
        sample = list(Contact.objects.order_by("?").values_list("pk", flat=True)[:100])
        started = time.monotonic()
        summary = compute_metrics(contact_ids=sample)
        figures["incremental_100_s"] = round(time.monotonic() - started, 3)
        self.report_steps(figures, "incremental_100_s", summary)
        figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        self.stdout.write(f"incremental_100_s: {figures['incremental_100_s']} s")
        self.stdout.write(f"peak RSS of this process: {figures['peak_rss_mb']} MB")
        if options["json"]:
            with open(options["json"], "w") as handle:
                handle.write(json_dumps(figures))
        self.stdout.write(json_dumps(figures))

    def report_steps(self, figures: dict[str, object], label: str, summary: MetricsSummary) -> None:
        steps = {name: ms / 1000 for name, ms in summary.steps_ms.items()}
        figures[f"{label.removesuffix('_s')}_steps_s"] = steps
        self.stdout.write("    " + ", ".join(f"{name}: {seconds:.2f} s" for name, seconds in steps.items()))

    def generate(self, contacts: int, activities: int) -> float:
        started = time.monotonic()
        columns, expressions = _contact_columns()
        kind, total = _kind_expression()
        with connection.cursor() as cursor:
            self.stdout.write("Deleting existing contacts ...")
            cursor.execute("TRUNCATE contacts_contact, contacts_activity, contacts_contactmetrics CASCADE")
            self.stdout.write(f"Generating {contacts:,} contacts ...")
            cursor.execute(
                f"INSERT INTO contacts_contact ({', '.join(columns)}) "
                f"SELECT {', '.join(expressions)} FROM generate_series(1, %s) AS g",
                [contacts],
            )
            cursor.execute("SELECT min(id) FROM contacts_contact")
            first_id = cursor.fetchone()[0]
            self.stdout.write(f"Generating {activities:,} activities (indexes dropped meanwhile) ...")
            with connection.schema_editor() as editor:
                for index in Activity._meta.indexes:
                    editor.remove_index(Activity, index)
            # Activity counts per contact are skewed (power of a uniform number), times spread over
            # 400 days back and 0.1% a day ahead (future, to be ignored).
            cursor.execute(
                f"""
                INSERT INTO contacts_activity (contact_id, kind, occurred_at, topic, product, url, campaign,
                                               value, created_at)
                SELECT {first_id} + floor(power(random(), 2) * %s)::bigint,
                       kind, occurred_at, topic, CASE WHEN kind IN ('page_view', 'pricing_view',
                       'feature_comparison', 'demo_request') THEN product ELSE '' END, '', '',
                       CASE WHEN kind = 'purchase' THEN round((random() * 5000)::numeric, 2) END, now()
                FROM (
                    SELECT {kind} AS kind,
                           CASE WHEN g %% 1000 = 0 THEN now() + random() * interval '1 day'
                                ELSE now() - random() * interval '400 days' END AS occurred_at,
                           ({_sql_array(TOPICS)})[1 + floor(random() * {len(TOPICS)})::int] AS topic,
                           ({_sql_array(PRODUCTS)})[1 + floor(random() * {len(PRODUCTS)})::int] AS product
                    FROM (SELECT g, random() * {total} AS r FROM generate_series(1, %s) AS g) draws
                ) generated
                """,
                [contacts, activities],
            )
            self.stdout.write("Rebuilding indexes ...")
            with connection.schema_editor() as editor:
                for index in Activity._meta.indexes:
                    editor.add_index(Activity, index)
            self.stdout.write("Analysing ...")
            cursor.execute("ANALYZE contacts_contact")
            cursor.execute("ANALYZE contacts_activity")
        elapsed = round(time.monotonic() - started, 1)
        self.stdout.write(f"Generated in {elapsed} s")
        return elapsed


def json_dumps(figures: dict) -> str:
    return json.dumps(figures, indent=2)
