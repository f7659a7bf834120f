"""The daily rollup of joins, leaves and size that the segment charts read (SegmentDay)."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from segments.editing import save_segment
from segments.models import MembershipChange, Segment, SegmentDay
from segments.refresh import refresh_contacts, refresh_segment
from segments.static import add_static_members, remove_static_members
from tests.factories import ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def hot_leads() -> Segment:
    return save_segment(
        Segment(name="Hot leads", slug="hot-leads", rule={"field": "lead_score", "op": "gte", "value": 50})
    )


def today_row(segment: Segment) -> tuple[int, int, int]:
    row = SegmentDay.objects.get(segment=segment, day=timezone.localdate())
    return row.joins, row.leaves, row.size


def test_a_full_refresh_adds_its_joins_and_leaves_to_the_day():
    hot = ContactFactory.create_batch(3, lead_score=80)
    segment = hot_leads()
    refresh_segment(segment.pk)
    assert today_row(segment) == (3, 0, 3)
    hot[0].lead_score = 10
    hot[0].save()
    ContactFactory.create_batch(2, lead_score=90)
    refresh_segment(segment.pk)
    assert today_row(segment) == (5, 1, 4)


def test_a_refresh_with_nothing_changed_writes_no_row():
    segment = hot_leads()
    refresh_segment(segment.pk)
    assert not SegmentDay.objects.exists()


def test_a_scoped_refresh_counts_too():
    segment = hot_leads()
    refresh_segment(segment.pk)
    contact = ContactFactory(lead_score=75)
    refresh_contacts([contact.pk])
    assert today_row(segment) == (1, 0, 1)


def test_static_member_edits_count_too():
    segment = SegmentFactory(kind="static", rule=None)
    contacts = ContactFactory.create_batch(3)
    add_static_members(segment, [c.pk for c in contacts])
    remove_static_members(segment, [contacts[0].pk])
    assert today_row(segment) == (3, 1, 2)


def test_the_rollup_agrees_with_the_change_log():
    ContactFactory.create_batch(4, lead_score=80)
    segment = hot_leads()
    refresh_segment(segment.pk)
    changes = MembershipChange.objects.filter(segment=segment)
    assert today_row(segment)[:2] == (changes.filter(kind="join").count(), changes.filter(kind="leave").count())


def test_the_migration_backfills_days_from_the_change_log():
    segment = SegmentFactory(size=5)
    contacts = ContactFactory.create_batch(6)
    now = timezone.now()
    for contact in contacts:
        MembershipChange.objects.create(
            segment=segment, contact=contact, kind="join", reason="rule", changed_at=now - timedelta(days=3)
        )
    MembershipChange.objects.create(segment=segment, contact=contacts[0], kind="leave", reason="rule", changed_at=now)
    migration = importlib.import_module("segments.migrations.0003_segment_day_rollup")
    migration.backfill(apps, schema_editor=None)  # reads and writes through the ORM only
    rows = list(SegmentDay.objects.filter(segment=segment).order_by("day").values_list("joins", "leaves", "size"))
    assert rows == [(6, 0, 6), (0, 1, 5)]
