"""The one membership writer (segments/membership.py): joins and leaves with their history rows,
reasons and actor, sizes, the day's rollup and the announcement, for each scope."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.models import Contact
from segments import events
from segments.membership import Target, edit_members, scoped_contact_ids, write_members
from segments.models import Membership, MembershipChange, Segment, SegmentDay
from tests.factories import ContactFactory, SegmentFactory, UserFactory
from tests.segments_support import history, member_ids, membership_rows_written


def _at(minutes: int):
    return timezone.now() + timedelta(minutes=minutes)


def _write(segment, target, *, reason=None, contact_ids=None, minutes=0):
    written = write_members([Target(segment, target, reason)], contact_ids=contact_ids, changed_at=_at(minutes))
    return written[segment.pk]


def _stored(segment) -> tuple[int, tuple[int, int, int] | None]:
    """The segment's stored size and today's rollup row (joins, leaves, size)."""
    segment = Segment.objects.get(pk=segment.pk)
    day = SegmentDay.objects.filter(segment=segment, day=timezone.localdate()).first()
    return segment.size, (day.joins, day.leaves, day.size) if day else None


@pytest.fixture
def heard():
    """The segment ids announced to segments.events listeners (announced when the test's block commits)."""
    calls: list[list[int]] = []
    events.add_listener(calls.append)
    yield calls
    events._listeners.remove(calls.append)


# -- the whole segment --------------------------------------------------------------------------


def test_it_writes_the_joins_and_leaves_with_history_rows_size_and_rollup(db):
    a, b, c = ContactFactory(lead_score=10), ContactFactory(lead_score=50), ContactFactory(lead_score=90)
    segment = SegmentFactory(size=1)
    Membership.objects.create(segment=segment, contact=a)

    written = _write(segment, Contact.objects.filter(lead_score__gte=40))

    assert (written.added, written.removed, written.size) == (2, 1, 2)
    assert member_ids(segment) == {b.pk, c.pk}
    assert sorted(history(segment)) == sorted([(a.pk, "leave", "rule"), (b.pk, "join", "rule"), (c.pk, "join", "rule")])
    assert _stored(segment) == (2, (2, 1, 2))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="JIT is PostgreSQL's")
def test_the_writers_statement_runs_without_jit(db):
    # JIT compiling cost more than running a large refresh at 1M contacts (its estimates are huge)
    segment = SegmentFactory()
    settings_seen = []

    def note_jit(execute, sql, params, many, context):
        if "written_segments" in sql:
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('jit')")
                settings_seen.append(cursor.fetchone()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note_jit):
        _write(segment, Contact.objects.all())

    assert settings_seen == ["off"]


def test_the_whole_segments_size_is_its_target_count_even_when_nothing_changed(db):
    ContactFactory.create_batch(3, lead_score=70)
    segment = SegmentFactory()
    _write(segment, Contact.objects.all(), reason="initial_build")
    Segment.objects.filter(pk=segment.pk).update(size=99)  # drifted

    written = _write(segment, Contact.objects.all(), minutes=1)

    assert (written.added, written.removed, written.size) == (0, 0, 3)
    assert _stored(segment) == (3, (3, 0, 3))  # no second row for a write that changed nobody


def test_a_no_change_write_writes_no_rows(db):
    ContactFactory(lead_score=10)
    segment = SegmentFactory()
    target = Contact.objects.filter(lead_score__gte=5)
    _write(segment, target, reason="initial_build")
    members, changes = Membership.objects.count(), MembershipChange.objects.count()

    with membership_rows_written() as rows, CaptureQueriesContext(connection) as queries:
        written = _write(segment, target, minutes=1)

    assert (written.added, written.removed, written.size) == (0, 0, 1)
    assert rows.written == (0 if connection.vendor == "postgresql" else 1)  # SQLite counts the size's update too
    assert (Membership.objects.count(), MembershipChange.objects.count()) == (members, changes)
    # PostgreSQL answers in one statement whose writes touch no row; SQLite reads the last history
    # id, stops after the (empty) history insert and counts.
    statements = [q["sql"].lstrip().upper() for q in queries.captured_queries]
    assert not any(s.startswith(("INSERT INTO SEGMENTS_MEMBERSHIP ", "DELETE")) for s in statements)
    assert len(statements) == (2 if connection.vendor == "postgresql" else 3)  # PostgreSQL: JIT off, the statement


def test_the_given_reason_is_recorded_on_every_change(db):
    contact = ContactFactory()
    segment = SegmentFactory()

    _write(segment, Contact.objects.all(), reason="initial_build")

    assert history(segment) == [(contact.pk, "join", "initial_build")]


def test_a_whole_segment_write_takes_exactly_one_target(db):
    segment = SegmentFactory()

    with pytest.raises(ValueError, match="exactly one target"):
        write_members([Target(segment, Contact.objects.all())] * 2, changed_at=_at(0))


def test_leaving_the_parent_is_recorded_as_the_parents_doing(db):
    kept, dropped, unmatched = ContactFactory.create_batch(3)
    parent = SegmentFactory()
    child = SegmentFactory(parent=parent, last_refresh_started_at=_at(-10))
    for contact in (kept, dropped, unmatched):
        Membership.objects.create(segment=child, contact=contact, joined_at=_at(-10))
    Membership.objects.create(segment=parent, contact=kept, joined_at=_at(-20))
    Membership.objects.create(segment=parent, contact=unmatched, joined_at=_at(-20))
    in_parent = Contact.objects.filter(memberships__segment=parent)

    _write(child, in_parent.exclude(pk=unmatched.pk))

    assert sorted(history(child)) == sorted([(dropped.pk, "leave", "parent"), (unmatched.pk, "leave", "rule")])


def test_joining_the_parent_since_the_last_refresh_is_recorded_as_the_parents_doing(db):
    old, new = ContactFactory(), ContactFactory()
    parent = SegmentFactory()
    child = SegmentFactory(parent=parent, last_refresh_started_at=_at(-10))
    Membership.objects.create(segment=parent, contact=old, joined_at=_at(-20))
    Membership.objects.create(segment=parent, contact=new, joined_at=_at(-5))

    _write(child, Contact.objects.filter(memberships__segment=parent))

    assert sorted(history(child)) == sorted([(old.pk, "join", "rule"), (new.pk, "join", "parent")])


# -- some contacts ------------------------------------------------------------------------------


def test_a_scoped_write_leaves_contacts_outside_the_scope_alone(db):
    inside, _outside, stale = ContactFactory(lead_score=80), ContactFactory(lead_score=80), ContactFactory(lead_score=1)
    segment = SegmentFactory(size=1)
    Membership.objects.create(segment=segment, contact=stale)

    # the target names contacts outside the scope too: they are not its business
    written = _write(segment, Contact.objects.filter(lead_score__gte=50), contact_ids=[inside.pk])

    assert (written.added, written.removed, written.size) == (1, 0, 2)
    assert member_ids(segment) == {inside.pk, stale.pk}
    assert _stored(segment) == (2, (1, 0, 2))


def test_a_scoped_write_of_several_segments_reads_the_scope_and_sizes_each(db):
    contacts = ContactFactory.create_batch(3, lead_score=70)
    high, low = SegmentFactory(), SegmentFactory(size=1)
    Membership.objects.create(segment=low, contact=contacts[2])
    in_scope = Contact.objects.filter(pk__in=scoped_contact_ids())
    targets = [Target(high, in_scope.filter(lead_score__gte=50)), Target(low, in_scope.filter(lead_score__lt=50))]

    written = write_members(targets, contact_ids=[c.pk for c in contacts[1:]], changed_at=_at(0))

    assert {pk: (w.added, w.removed, w.size) for pk, w in written.items()} == {high.pk: (2, 0, 2), low.pk: (0, 1, 0)}
    assert member_ids(high) == {contacts[1].pk, contacts[2].pk}
    assert member_ids(low) == set()
    assert (_stored(high), _stored(low)) == ((2, (2, 0, 2)), (0, (0, 1, 0)))


def test_an_unchanged_segment_of_a_scoped_write_reports_nothing_written(db):
    contact = ContactFactory()
    segment = SegmentFactory()

    written = _write(segment, Contact.objects.none(), contact_ids=[contact.pk])

    assert (written.added, written.removed, written.size, written.changed) == (0, 0, None, False)
    assert _stored(segment) == (0, None)


def test_a_scoped_write_runs_the_same_statements_for_one_contact_or_many(db, django_assert_num_queries):
    contacts = ContactFactory.create_batch(30, lead_score=70)
    segment = SegmentFactory()
    target = Contact.objects.filter(lead_score__gte=50)
    expected = 2 if connection.vendor == "postgresql" else 6  # PostgreSQL: JIT off, the statement

    with django_assert_num_queries(expected):
        _write(segment, target, contact_ids=[contacts[0].pk])
    with django_assert_num_queries(expected):
        _write(segment, target, contact_ids=[c.pk for c in contacts], minutes=1)

    assert len(member_ids(segment)) == 30


def test_two_writes_in_one_transaction_at_the_same_time_each_apply_their_own_rows(db):
    first, second = ContactFactory(), ContactFactory()
    segment = SegmentFactory()
    everyone, at = Contact.objects.all(), _at(0)

    write_members([Target(segment, everyone)], contact_ids=[first.pk], changed_at=at)
    write_members([Target(segment, everyone)], contact_ids=[second.pk], changed_at=at)

    assert member_ids(segment) == {first.pk, second.pk}
    assert len(history(segment)) == 2


# -- manual edits -------------------------------------------------------------------------------


def test_a_manual_edit_records_who_made_it(db, django_capture_on_commit_callbacks, heard):
    staying, joining, leaving = ContactFactory.create_batch(3)
    segment = SegmentFactory(kind="static", rule=None, size=2)
    for contact in (staying, leaving):
        Membership.objects.create(segment=segment, contact=contact)
    user = UserFactory()

    with django_capture_on_commit_callbacks(execute=True):
        written = edit_members(segment, add=[joining.pk, staying.pk, 999_999], remove=[leaving.pk], actor=user)

    assert (written.added, written.removed, written.size) == (1, 1, 2)
    assert member_ids(segment) == {staying.pk, joining.pk}
    rows = MembershipChange.objects.filter(segment=segment).order_by("contact_id")
    assert [(r.contact_id, r.kind, r.reason, r.changed_by) for r in rows] == [
        (joining.pk, "join", "manual", user),
        (leaving.pk, "leave", "manual", user),
    ]
    assert _stored(segment) == (2, (1, 1, 2))
    assert heard == [[segment.pk]]


def test_a_manual_edit_takes_the_callers_reason(db):
    loser, winner = ContactFactory(), ContactFactory()
    segment = SegmentFactory(kind="static", rule=None, size=1)
    Membership.objects.create(segment=segment, contact=loser)

    edit_members(segment, add=[winner.pk], remove=[loser.pk], reason="rule_edited")

    assert sorted(history(segment)) == sorted([(winner.pk, "join", "rule_edited"), (loser.pk, "leave", "rule_edited")])


def test_a_contact_both_added_and_removed_is_refused(db):
    contact = ContactFactory()
    segment = SegmentFactory(kind="static", rule=None)

    with pytest.raises(ValueError, match=f"both added and removed: \\[{contact.pk}\\]"):
        edit_members(segment, add=[contact.pk], remove=[contact.pk])
    assert not MembershipChange.objects.exists()


def test_an_edit_that_changes_nobody_announces_nothing(db, django_capture_on_commit_callbacks, heard):
    contact = ContactFactory()
    segment = SegmentFactory(kind="static", rule=None)

    with django_capture_on_commit_callbacks(execute=True):
        written = edit_members(segment, remove=[contact.pk])

    assert not written.changed
    assert heard == []
