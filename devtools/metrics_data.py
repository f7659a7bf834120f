"""Generated contacts and activities for the metrics benchmark and the tests that need volume (PostgreSQL).

One INSERT ... SELECT over generate_series each: contacts with every non-null column set, and
activities with a typical kind mix, skewed counts per contact (a power of a uniform number),
times spread over 400 days back and 0.1% up to a day ahead (future, to be ignored by metrics).
Everything already in contacts, activities and metrics is deleted first (TRUNCATE ... CASCADE).
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection, models

from contacts.models import Activity, ActivityKind, Contact
from crmseg_site.model_fields import column
from devtools.generate import sql_array

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


def _contact_columns() -> tuple[list[str], list[str]]:
    """Column names and generate_series expressions (over `g`) for every non-null Contact column."""
    special = {
        "email": "'bench' || g || '@bench.example'",
        "first_name": "'Bench'",
        "last_name": "'Contact ' || g",
        "country": "'US'",
        "lifecycle_stage": f"({sql_array(STAGES)})[1 + (g %% {len(STAGES)})]",
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
            expression = "'{}'::jsonb" if isinstance(field.get_default(), dict) else "'[]'::jsonb"
        elif isinstance(field, models.BooleanField):
            expression = "false"
        elif isinstance(field, models.DateTimeField):
            expression = "now()"
        elif isinstance(field, models.IntegerField | models.DecimalField | models.FloatField):
            expression = "0"
        else:
            expression = "''"
        columns.append(column(Contact, field.name))
        expressions.append(expression)
    return columns, expressions


def _kind_expression() -> tuple[str, int]:
    """A kind picked by a uniform random number r in [0, total) against cumulative weights."""
    total = sum(weight for _, weight in KIND_MIX)
    branches, running = [], 0
    for kind, weight in KIND_MIX:
        running += weight
        branches.append(f"WHEN r < {running} THEN '{kind}'")
    return f"CASE {' '.join(branches)} END", total


def generate(contacts: int, activities: int, *, say: Callable[[str], None] = lambda line: None) -> None:
    """Replace every contact, activity and metrics row with `contacts` and `activities` generated ones."""
    columns, expressions = _contact_columns()
    kind, total = _kind_expression()
    with connection.cursor() as cursor:
        say("Deleting existing contacts ...")
        cursor.execute("TRUNCATE contacts_contact, contacts_activity, contacts_contactmetrics CASCADE")
        say(f"Generating {contacts:,} contacts ...")
        cursor.execute(
            f"INSERT INTO contacts_contact ({', '.join(columns)}) "
            f"SELECT {', '.join(expressions)} FROM generate_series(1, %s) AS g",
            [contacts],
        )
        cursor.execute("SELECT min(id) FROM contacts_contact")
        first_id = cursor.fetchone()[0]
        say(f"Generating {activities:,} activities (indexes dropped meanwhile) ...")
        with connection.schema_editor() as editor:
            for index in Activity._meta.indexes:
                editor.remove_index(Activity, index)
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
                       ({sql_array(TOPICS)})[1 + floor(random() * {len(TOPICS)})::int] AS topic,
                       ({sql_array(PRODUCTS)})[1 + floor(random() * {len(PRODUCTS)})::int] AS product
                FROM (SELECT g, random() * {total} AS r FROM generate_series(1, %s) AS g) draws
            ) generated
            """,
            [contacts, activities],
        )
        say("Rebuilding indexes ...")
        with connection.schema_editor() as editor:
            for index in Activity._meta.indexes:
                editor.add_index(Activity, index)
        say("Analysing ...")
        cursor.execute("ANALYZE contacts_contact")
        cursor.execute("ANALYZE contacts_activity")
