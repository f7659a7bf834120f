"""Contacts counted by some of their columns and by their outcomes in a window, in one statement.

The outcomes are those of boundary tests and dimension comparisons (segments/boundaries.py), as
segment analytics counts them (segments/analytics/channels.py), over `now - days <= t <= now`:
converted (a won deal closed or a purchase), engaged (an engagement activity), responded (an
e-mail click, on one campaign if named, case-insensitive); revenue is won deal amounts plus
purchase values.

They are aggregated per contact once, in one pass over the window's activities of the kinds the
asked outcomes need and one over its won deals, each grouped by contact, and joined to the
contacts; the join is then grouped by the caller's columns. (Asked per contact, as correlated
EXISTS and sums, they cost an index probe per contact and outcome: 14.6 s of a boundary test at
1M contacts.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Context, Decimal

from django.db import connection
from django.db.models import Case, DecimalField, F, IntegerField, Max, Q, QuerySet, Sum, Value, When

from contacts.models import Activity, ActivityKind, Contact, Deal, DealStage
from segments.analytics.channels import ENGAGEMENT_KINDS

OUTCOMES = ("converted", "engaged", "responded")
MONEY = DecimalField(max_digits=20, decimal_places=2)
_CENT = Decimal("0.01")


def count_outcomes(
    contacts: QuerySet[Contact],
    keys: Sequence[str],
    *,
    outcomes: Sequence[str],
    revenue: bool = False,
    now: datetime,
    days: int,
    campaign: str = "",
) -> list[dict]:
    """Rows of `keys` (annotations of `contacts`), the `outcomes` (0 or 1) and `n`, the number of
    contacts with those values; with `revenue`, also the sums of revenue and of its square over
    them (Decimal, 0 when none)."""
    start = now - timedelta(days=days)
    q = connection.ops.quote_name
    source, params = contacts.order_by().annotate(cid=F("pk")).values("cid", *keys).query.sql_with_params()
    joins, params = [f"({source}) c"], list(params)
    kinds = _activity_kinds(outcomes, revenue)
    if kinds:
        acts, act_params = _per_contact_activities(kinds, start=start, now=now, campaign=campaign)
        joins.append(f"LEFT JOIN ({acts}) a ON a.contact_id = c.cid")
        params.extend(act_params)
    if "converted" in outcomes or revenue:
        deals, deal_params = _per_contact_deals(start=start, now=now)
        joins.append(f"LEFT JOIN ({deals}) d ON d.contact_id = c.cid")
        params.extend(deal_params)
    columns = {key: f"c.{q(key)}" for key in keys}
    columns["converted"] = "CASE WHEN a.purchased = 1 OR d.contact_id IS NOT NULL THEN 1 ELSE 0 END"
    columns["engaged"] = "COALESCE(a.engaged, 0)"
    columns["responded"] = "COALESCE(a.responded, 0)"
    grouped = [*keys, *outcomes]
    per_contact = [f"{columns[name]} AS {q(name)}" for name in grouped]
    names = ", ".join(q(name) for name in grouped)
    sums = ""
    if revenue:
        per_contact.append("COALESCE(a.purchases, 0) + COALESCE(d.amount, 0) AS revenue")
        sums = ", SUM(revenue) AS revenue, SUM(revenue * revenue) AS revenue_sq"
    sql = (
        f"SELECT {names}, COUNT(*) AS n{sums} "
        f"FROM (SELECT {', '.join(per_contact)} FROM {' '.join(joins)}) per_contact GROUP BY {names}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    width = len(grouped) + 1
    result = []
    for row in rows:
        item = dict(zip([*grouped, "n"], row[:width], strict=True))
        if revenue:
            item["revenue"], item["revenue_sq"] = _money(row[width]), _money(row[width + 1])
        result.append(item)
    return result


def _activity_kinds(outcomes: Sequence[str], revenue: bool) -> list[str]:
    """The activity kinds the outcomes read: a pass over the window reads only these."""
    kinds = set()
    if "converted" in outcomes or revenue:
        kinds.add(ActivityKind.PURCHASE)
    if "engaged" in outcomes:
        kinds.update(ENGAGEMENT_KINDS)
    if "responded" in outcomes:
        kinds.add(ActivityKind.EMAIL_CLICK)
    return sorted(kinds)


def _per_contact_activities(kinds: list[str], *, start: datetime, now: datetime, campaign: str) -> tuple[str, tuple]:
    """contact_id, purchased, engaged, responded (0/1) and purchases (sum of values) per contact
    with an activity of one of `kinds` in the window."""
    purchase = Q(kind=ActivityKind.PURCHASE)
    click = Q(kind=ActivityKind.EMAIL_CLICK)
    if campaign:
        click &= Q(campaign__iexact=campaign)
    grouped = (
        Activity.objects.filter(occurred_at__gte=start, occurred_at__lte=now, kind__in=kinds)
        .order_by()
        .values("contact_id")
        .annotate(
            purchased=Max(_flag(purchase)),
            engaged=Max(_flag(Q(kind__in=ENGAGEMENT_KINDS))),
            responded=Max(_flag(click)),
            purchases=Sum(Case(When(purchase, then=F("value")), output_field=MONEY)),
        )
    )
    return grouped.query.sql_with_params()


def _per_contact_deals(*, start: datetime, now: datetime) -> tuple[str, tuple]:
    """contact_id and amount (sum) per contact with a deal won in the window."""
    won = Deal.objects.filter(stage=DealStage.WON, closed_at__gte=start, closed_at__lte=now, contact__isnull=False)
    return won.order_by().values("contact_id").annotate(amount=Sum("amount")).query.sql_with_params()


def _flag(condition: Q) -> Case:
    return Case(When(condition, then=Value(1)), default=Value(0), output_field=IntegerField())


def _money(value: Decimal | float | None) -> Decimal:
    """A sum as the ORM reads a decimal column: exact on PostgreSQL; on SQLite, whose sums of
    decimals are floating point, rounded to cents as Django's converter rounds them."""
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    return Context(prec=15).create_decimal_from_float(value).quantize(_CENT)
