"""Planted data for the prediction tests: contacts whose outcome follows a known signal."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from contacts.models import Activity, Contact, LifecycleChange, PropertyDefinition

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HORIZON = timedelta(days=90)


def plant_convert(
    n: int,
    *,
    seed: int = 1,
    hot_rate: float = 0.6,
    cold_rate: float = 0.1,
    leak: bool = False,
    hot_vps: bool = False,
    now: datetime = NOW,
) -> list[int]:
    """`n` leads created 400 days before `now`. Before each of the two cutoffs (now - 180 and
    now - 90 days) a random 40% are "hot": three pricing views in the 30 days before it. A hot
    lead becomes a customer 10 days after the cutoff with probability `hot_rate`, a cold one with
    `cold_rate`. With `leak`, a number property `final_contract_value` is set for the converted only.
    With `hot_vps`, the hot leads are the vice presidents instead (seniority "vp", a third of
    them) and nobody views pricing: a signal in a field, not in activities."""
    rng = random.Random(seed)
    if leak:
        PropertyDefinition.objects.get_or_create(
            key="final_contract_value", defaults={"label": "Final contract value", "type": "number", "layer": "value"}
        )
    created = now - timedelta(days=400)
    seniorities = [rng.choice(["vp", "manager", "entry"]) for _ in range(n)]
    # Everything is drawn first, in one fixed order, and then written in three statements.
    activities: list[tuple[int, str, datetime]] = []
    converted_at: dict[int, datetime] = {}
    contract_values: dict[int, int] = {}
    for cutoff in (now - 2 * HORIZON, now - HORIZON):
        for i in range(n):
            if i in converted_at:
                continue
            hot = rng.random() < 0.4
            if hot_vps:
                hot = seniorities[i] == "vp"
            elif hot:
                for _ in range(3):
                    activities.append((i, "pricing_view", cutoff - timedelta(days=rng.uniform(1, 29))))
            activities.append((i, "email_open", cutoff - timedelta(days=rng.uniform(1, 80))))
            if rng.random() < (hot_rate if hot else cold_rate):
                converted_at[i] = cutoff + timedelta(days=10)
                if leak:
                    contract_values[i] = rng.randint(5_000, 50_000)
    contacts = Contact.objects.bulk_create(
        [
            Contact(
                email=f"planted{i}@example.com",
                lifecycle_stage="customer" if i in converted_at else "lead",
                lifecycle_changed_at=converted_at.get(i, created),
                created_at=created,
                seniority=seniorities[i],
                properties={"final_contract_value": contract_values[i]} if i in contract_values else {},
            )
            for i in range(n)
        ]
    )
    LifecycleChange.objects.bulk_create(
        [LifecycleChange(contact=c, from_stage=None, to_stage="lead", changed_at=created) for c in contacts]
        + [
            LifecycleChange(contact=contacts[i], from_stage="lead", to_stage="customer", changed_at=at)
            for i, at in converted_at.items()
        ]
    )
    Activity.objects.bulk_create(Activity(contact=contacts[i], kind=kind, occurred_at=at) for i, kind, at in activities)
    return [c.pk for c in contacts]
