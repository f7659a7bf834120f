"""Two refreshes of one segment at once, on real connections in real threads."""

import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.utils import timezone
from django_q.models import Schedule

from segments.editing import save_segment
from segments.locks import lock_segment
from segments.models import MembershipChange, Segment
from segments.refresh import refresh_segment
from segments.tasks import refresh_segment_task
from tests.factories import ContactFactory
from tests.segments_support import member_ids

pytestmark = pytest.mark.django_db(transaction=True)
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="try-lock exists on PostgreSQL only; SQLite waits for its write lock"
)


def _in_thread(results: list, **kwargs):
    def run(segment_id: int) -> None:
        try:
            results.append(refresh_segment(segment_id, **kwargs))
        finally:
            connections.close_all()

    return run


def _hot_segment_with_pending_changes() -> tuple[Segment, set[int]]:
    stays, leaves = ContactFactory(lead_score=90), ContactFactory(lead_score=90)
    segment = save_segment(
        Segment(name="Hot", slug="hot", kind="dynamic", rule={"field": "lead_score", "op": "gte", "value": 50})
    )
    assert refresh_segment(segment.pk).status == "ok"
    leaves.lead_score = 10
    leaves.save()
    joins = ContactFactory.create_batch(3, lead_score=70)
    return segment, {stays.pk, *(c.pk for c in joins)}


def test_two_refreshes_at_once_apply_each_change_exactly_once():
    segment, expected = _hot_segment_with_pending_changes()
    results: list = []
    threads = [threading.Thread(target=_in_thread(results), args=(segment.pk,)) for _ in range(2)]

    with transaction.atomic():
        lock_segment(segment.pk)  # both threads queue behind this lock
        for thread in threads:
            thread.start()
        time.sleep(0.5)
    for thread in threads:
        thread.join(timeout=30)

    assert sorted((r.status, r.added, r.removed) for r in results) == [("ok", 0, 0), ("ok", 3, 1)]
    assert member_ids(segment) == expected
    changes = MembershipChange.objects.filter(segment=segment, reason="rule")
    assert changes.count() == 4
    assert len(set(changes.values_list("contact_id", flat=True))) == 4
    segment.refresh_from_db()
    assert segment.size == len(expected)


@postgresql_only
def test_a_worker_finding_the_segment_locked_skips_and_retries_later():
    segment, _ = _hot_segment_with_pending_changes()
    results: list = []
    thread = threading.Thread(target=_in_thread(results, skip_if_locked=True), args=(segment.pk,))
    task_results: list = []

    with transaction.atomic():
        lock_segment(segment.pk)
        thread.start()
        thread.join(timeout=30)
        worker = threading.Thread(
            target=lambda: (task_results.extend(refresh_segment_task(segment.pk)), connections.close_all())
        )
        worker.start()
        worker.join(timeout=30)

    assert [r.status for r in results] == ["skipped"]
    assert task_results[0]["status"] == "skipped"
    retry = Schedule.objects.get(func="segments.tasks.refresh_segment_task")
    assert (retry.args, retry.schedule_type) == (repr(segment.pk), Schedule.ONCE)
    assert MembershipChange.objects.filter(segment=segment, reason="rule").count() == 0


def test_two_edits_that_together_close_a_cycle_cannot_both_pass_the_check():
    rule = {"field": "lead_score", "op": "gte", "value": 50}
    first = save_segment(Segment(name="First", slug="first", kind="dynamic", rule=rule))
    second = save_segment(Segment(name="Second", slug="second", kind="dynamic", rule=rule))
    errors: list = []

    def second_reads_first() -> None:
        try:
            second.rule = {"all": [rule, {"in_segment": "first"}]}
            save_segment(second)
        except ValidationError as error:
            errors.append(error)
        finally:
            connections.close_all()

    other = threading.Thread(target=second_reads_first)
    with transaction.atomic():
        first.rule = {"all": [rule, {"in_segment": "second"}]}
        save_segment(first)  # holds the graph lock until this block commits
        other.start()
        other.join(timeout=0.5)
        assert other.is_alive(), "the second edit checked the graph while the first was uncommitted"
    other.join(timeout=30)

    assert len(errors) == 1
    assert "This would make a dependency cycle: second -> first -> second" in str(errors[0])
    second.refresh_from_db()
    assert second.rule == rule


def test_a_refresh_that_waited_for_the_lock_reads_the_segment_as_the_holder_left_it():
    # given a built segment with a pending join, and a transaction holding its lock
    segment, _ = _hot_segment_with_pending_changes()
    results: list = []
    thread = threading.Thread(target=_in_thread(results), args=(segment.pk,))

    # when a refresh queues behind the lock and the holder marks the rule edited before it commits
    with transaction.atomic():
        lock_segment(segment.pk)
        thread.start()
        time.sleep(0.5)
        Segment.objects.filter(pk=segment.pk).update(rule_edited_at=timezone.now())
    thread.join(timeout=30)

    # then the refresh saw the mark (its changes say so, and it cleared it), not the row before it
    assert [(r.status, r.added, r.removed) for r in results] == [("ok", 3, 1)]
    reasons = set(
        MembershipChange.objects.filter(segment=segment)
        .exclude(reason="initial_build")
        .values_list("reason", flat=True)
    )
    assert reasons == {"rule_edited"}
    segment.refresh_from_db()
    assert segment.rule_edited_at is None
