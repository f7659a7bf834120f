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
    now: datetime = NOW,
) -> list[int]:
    """`n` leads created 400 days before `now`. Before each of the two cutoffs (now - 180 and
    now - 90 days) a random 40% are "hot": three pricing views in the 30 days before it. A hot
    lead becomes a customer 10 days after the cutoff with probability `hot_rate`, a cold one with
    `cold_rate`. With `leak`, a number property `final_contract_value` is set for the converted only."""
    rng = random.Random(seed)
    if leak:
        PropertyDefinition.objects.get_or_create(
            key="final_contract_value", defaults={"label": "Final contract value", "type": "number", "layer": "value"}
        )
    created = now - timedelta(days=400)
    contacts = Contact.objects.bulk_create(
        [
            Contact(
                email=f"planted{i}@example.com",
                lifecycle_stage="lead",
                lifecycle_changed_at=created,
                created_at=created,
                seniority=rng.choice(["vp", "manager", "entry"]),
            )
            for i in range(n)
        ]
    )
    changes = [LifecycleChange(contact=c, from_stage=None, to_stage="lead", changed_at=created) for c in contacts]
    activities = []
    converted_ids = []
    for cutoff in (now - 2 * HORIZON, now - HORIZON):
        for contact in contacts:
            if contact.pk in converted_ids:
                continue
            hot = rng.random() < 0.4
            if hot:
                for _ in range(3):
                    at = cutoff - timedelta(days=rng.uniform(1, 29))
                    activities.append(Activity(contact=contact, kind="pricing_view", occurred_at=at))
            activities.append(
                Activity(contact=contact, kind="email_open", occurred_at=cutoff - timedelta(days=rng.uniform(1, 80)))
            )
            if rng.random() < (hot_rate if hot else cold_rate):
                at = cutoff + timedelta(days=10)
                changes.append(LifecycleChange(contact=contact, from_stage="lead", to_stage="customer", changed_at=at))
                contact.lifecycle_stage, contact.lifecycle_changed_at = "customer", at
                converted_ids.append(contact.pk)
                if leak:
                    contact.properties = {"final_contract_value": rng.randint(5_000, 50_000)}
    Contact.objects.bulk_update(contacts, ["lifecycle_stage", "lifecycle_changed_at", "properties"])
    LifecycleChange.objects.bulk_create(changes)
    Activity.objects.bulk_create(activities)
    return [c.pk for c in contacts]
