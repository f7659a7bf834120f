from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.models import Contact
from segments.diffing import apply_target
from segments.models import Membership, MembershipChange
from tests.factories import ContactFactory, SegmentFactory
from tests.segments_support import history, member_ids, membership_rows_written


def _at(minutes: int):
    return timezone.now() + timedelta(minutes=minutes)


def test_it_writes_the_joins_and_leaves_with_history_rows(db):
    a, b, c = ContactFactory(lead_score=10), ContactFactory(lead_score=50), ContactFactory(lead_score=90)
    segment = SegmentFactory()
    Membership.objects.create(segment=segment, contact=a)

    result = apply_target(segment, Contact.objects.filter(lead_score__gte=40), changed_at=_at(0), reason=None)

    assert (result.added, result.removed, result.size) == (2, 1, 2)
    assert member_ids(segment) == {b.pk, c.pk}
    assert sorted(history(segment)) == sorted([(a.pk, "leave", "rule"), (b.pk, "join", "rule"), (c.pk, "join", "rule")])


def test_a_no_change_diff_writes_no_rows(db):
    ContactFactory(lead_score=10)
    segment = SegmentFactory()
    target = Contact.objects.filter(lead_score__gte=5)
    apply_target(segment, target, changed_at=_at(0), reason="initial_build")
    members, changes = Membership.objects.count(), MembershipChange.objects.count()

    with membership_rows_written() as rows, CaptureQueriesContext(connection) as queries:
        result = apply_target(segment, target, changed_at=_at(1), reason=None)

    assert (result.added, result.removed, result.size) == (0, 0, 1)
    assert rows.written == 0
    assert (Membership.objects.count(), MembershipChange.objects.count()) == (members, changes)
    # No separate membership INSERT/DELETE runs: PostgreSQL answers in one statement whose writes
    # touch no row, the portable path stops after the (empty) history insert and counts.
    statements = [q["sql"].lstrip().upper() for q in queries.captured_queries]
    assert not any(s.startswith(("INSERT INTO SEGMENTS_MEMBERSHIP ", "DELETE")) for s in statements)
    assert len(statements) == (1 if connection.vendor == "postgresql" else 2)


def test_the_given_reason_is_recorded_on_every_change(db):
    contact = ContactFactory()
    segment = SegmentFactory()

    apply_target(segment, Contact.objects.all(), changed_at=_at(0), reason="initial_build")

    assert history(segment) == [(contact.pk, "join", "initial_build")]


def test_a_scoped_diff_leaves_contacts_outside_the_scope_alone(db):
    inside, outside, stale = ContactFactory(lead_score=80), ContactFactory(lead_score=80), ContactFactory(lead_score=1)
    segment = SegmentFactory()
    Membership.objects.create(segment=segment, contact=stale)

    result = apply_target(
        segment, Contact.objects.filter(lead_score__gte=50), changed_at=_at(0), reason=None, scope=[inside.pk]
    )

    assert (result.added, result.removed, result.size) == (1, 0, None)
    assert member_ids(segment) == {inside.pk, stale.pk}
    assert outside.pk not in member_ids(segment)


def test_leaving_the_parent_is_recorded_as_the_parents_doing(db):
    kept, dropped, unmatched = ContactFactory.create_batch(3)
    parent = SegmentFactory()
    child = SegmentFactory(parent=parent, last_refresh_started_at=_at(-10))
    for contact in (kept, dropped, unmatched):
        Membership.objects.create(segment=child, contact=contact, joined_at=_at(-10))
    Membership.objects.create(segment=parent, contact=kept, joined_at=_at(-20))
    Membership.objects.create(segment=parent, contact=unmatched, joined_at=_at(-20))
    in_parent = Contact.objects.filter(memberships__segment=parent)

    apply_target(child, in_parent.exclude(pk=unmatched.pk), changed_at=_at(0), reason=None)

    assert sorted(history(child)) == sorted([(dropped.pk, "leave", "parent"), (unmatched.pk, "leave", "rule")])


def test_joining_the_parent_since_the_last_refresh_is_recorded_as_the_parents_doing(db):
    old, new = ContactFactory(), ContactFactory()
    parent = SegmentFactory()
    child = SegmentFactory(parent=parent, last_refresh_started_at=_at(-10))
    Membership.objects.create(segment=parent, contact=old, joined_at=_at(-20))
    Membership.objects.create(segment=parent, contact=new, joined_at=_at(-5))

    apply_target(child, Contact.objects.filter(memberships__segment=parent), changed_at=_at(0), reason=None)

    assert sorted(history(child)) == sorted([(old.pk, "join", "rule"), (new.pk, "join", "parent")])


def test_a_scoped_diff_runs_the_same_statements_for_one_contact_or_many(db, django_assert_num_queries):
    contacts = ContactFactory.create_batch(30, lead_score=70)
    segment = SegmentFactory()
    target = Contact.objects.filter(lead_score__gte=50)
    expected = 1 if connection.vendor == "postgresql" else 3

    with django_assert_num_queries(expected):
        apply_target(segment, target, changed_at=_at(0), reason=None, scope=[contacts[0].pk])
    with django_assert_num_queries(expected):
        apply_target(segment, target, changed_at=_at(1), reason=None, scope=[c.pk for c in contacts])

    assert len(member_ids(segment)) == 30
