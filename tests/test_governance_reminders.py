"""Review reminders and escalation (issue 17 item 4): the owner is reminded once per review period
(ahead, due or overdue), by e-mail and in the app; long-overdue reviews escalate once to the backup
owner and the Operations group; two workers running the job at once still send each notice once."""

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from segments.governance.reminders import send_review_reminders
from segments.governance.reviews import record_review
from segments.models import ReviewPolicy, ReviewReminder, Segment
from tests.factories import SegmentFactory, UserFactory
from tests.processes import python

CREATED = datetime(2026, 1, 10, 9, tzinfo=UTC)  # metrics review due 10 Feb 2026 (monthly)
DUE = datetime(2026, 2, 10, 9, tzinfo=UTC)


@pytest.fixture(autouse=True)
def only_metrics(db, settings):
    """UTC days, and only the monthly metrics review switched on (the others are months away anyway)."""
    settings.TIME_ZONE = "UTC"
    for kind in ("boundaries", "strategy"):
        for category in ("other", "persona"):
            ReviewPolicy.objects.create(category=category, kind=kind, enabled=False, disabled_reason="not in this test")


def _segment(owner=None, **fields) -> Segment:
    segment = SegmentFactory(owner=owner, **fields)
    Segment.objects.filter(pk=segment.pk).update(created_at=CREATED)
    segment.refresh_from_db()
    return segment


def _ops(username: str):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name="Operations"))
    return user


def _inbox() -> list[tuple[str, str]]:
    return sorted((message.to[0], message.subject) for message in mail.outbox)


def test_the_owner_is_reminded_once_from_seven_days_ahead(db):
    owner = UserFactory(username="olga")
    _segment(owner, name="Hot leads")

    early = send_review_reminders(now=DUE - timedelta(days=8))
    send_review_reminders(now=DUE - timedelta(days=7))
    send_review_reminders(now=DUE - timedelta(days=7, hours=-3))
    send_review_reminders(now=DUE)
    send_review_reminders(now=DUE + timedelta(days=3))

    assert early == {"notices": 0, "emailed": 0}
    assert _inbox() == [("olga@example.com", "[crmseg] The metrics review of Hot leads is due on 10 Feb 2026.")]
    notice = ReviewReminder.objects.get()
    assert (notice.recipient, notice.stage, str(notice.due), notice.read_at) == (owner, "remind", "2026-02-10", None)
    assert "/admin/segments/review/add/?segment=" in mail.outbox[0].body


def test_the_next_review_period_gets_its_own_reminder(db):
    owner = UserFactory(username="olga")
    segment = _segment(owner, name="Hot leads")
    send_review_reminders(now=DUE)
    record_review(segment, kind="metrics", decision="keep", recorded_by="olga", now=DUE)

    send_review_reminders(now=DUE + timedelta(days=10))  # next due 10 Mar: not yet
    send_review_reminders(now=DUE + timedelta(days=21))

    assert [subject for _, subject in _inbox()] == [
        "[crmseg] The metrics review of Hot leads is due on 10 Mar 2026.",
        "[crmseg] The metrics review of Hot leads is due today.",
    ]


def test_an_inactive_owner_is_replaced_by_the_backup_owner(db):
    owner = UserFactory(username="gone", is_active=False)
    _segment(owner, backup_owner=UserFactory(username="bea"), name="Hot leads")

    send_review_reminders(now=DUE)

    assert _inbox() == [("bea@example.com", "[crmseg] The metrics review of Hot leads is due today.")]


def test_escalation_after_more_than_fourteen_days_goes_once_to_backup_and_operations(db):
    owner, backup = UserFactory(username="olga"), UserFactory(username="bea")
    _ops("ops1")
    _segment(owner, backup_owner=backup, name="Hot leads")

    send_review_reminders(now=DUE + timedelta(days=14))
    assert [to for to, _ in _inbox()] == ["olga@example.com"]  # 14 days: not yet escalated

    send_review_reminders(now=DUE + timedelta(days=15))
    send_review_reminders(now=DUE + timedelta(days=16))

    escalated = [(to, subject) for to, subject in _inbox() if "Escalated" in subject]
    subject = "[crmseg] Escalated: the metrics review of Hot leads was due on 10 Feb 2026 (15 days overdue); owner"
    assert escalated == [(to, subject + ": olga.") for to in ("bea@example.com", "ops1@example.com")]
    assert len(mail.outbox) == 3


def test_a_segment_without_an_active_owner_still_escalates(db):
    _ops("ops1")
    _segment(None, name="Orphan")

    send_review_reminders(now=DUE + timedelta(days=20))

    assert [subject for _, subject in _inbox()] == [
        "[crmseg] Escalated: the metrics review of Orphan was due on 10 Feb 2026 (20 days overdue); owner: no owner."
    ]


def test_archived_segments_and_switched_off_reviews_are_not_reminded(db):
    owner = UserFactory(username="olga")
    _segment(owner, status="archived")
    quiet = _segment(owner, category="persona")
    ReviewPolicy.objects.create(segment=quiet, kind="metrics", enabled=False, disabled_reason="seasonal list")

    assert send_review_reminders(now=DUE + timedelta(days=30)) == {"notices": 0, "emailed": 0}


def test_the_job_takes_a_fixed_number_of_queries(db):
    for n in range(3):
        _segment(UserFactory(username=f"a{n}"))
    with CaptureQueriesContext(connection) as few:
        send_review_reminders(now=DUE)
    for n in range(12):
        _segment(UserFactory(username=f"b{n}"))

    with CaptureQueriesContext(connection) as many:
        result = send_review_reminders(now=DUE)

    assert result == {"notices": 15, "emailed": 12}
    assert len(many) == len(few)


def test_the_governance_page_shows_my_reminders_until_read(client, ops_user):
    _segment(ops_user, name="Hot leads")
    send_review_reminders(now=DUE)
    client.force_login(ops_user)

    page = client.get(reverse("admin:segments_governance")).content.decode()
    client.post(reverse("admin:segments_governance_reminders_read"))
    after = client.get(reverse("admin:segments_governance")).content.decode()

    assert "The metrics review of Hot leads is due today." in page
    assert 'id="my-reminders"' not in after
    assert ReviewReminder.objects.get().read_at is not None


TWO_WORKERS = """
import sys, time
from datetime import datetime
from segments.governance.reminders import send_review_reminders
start, now = float(sys.argv[1]), datetime.fromisoformat(sys.argv[2])
time.sleep(max(0, start - time.time()))
print("RESULT", send_review_reminders(now=now), flush=True)
"""


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_each_notice_exactly_once(settings):
    if connection.vendor != "postgresql":
        pytest.skip("two processes writing at once: PostgreSQL")
    settings.TIME_ZONE = "UTC"
    _ops("ops1")
    for n in range(20):
        _segment(UserFactory(username=f"owner{n}"), backup_owner=UserFactory(username=f"backup{n}"))
    now = (DUE + timedelta(days=20)).isoformat()
    start = time.time() + 4  # both processes set up Django first, then start together

    outputs = []
    with (
        python(TWO_WORKERS, start, now, TIME_ZONE="UTC") as one,
        python(TWO_WORKERS, start, now, TIME_ZONE="UTC") as two,
    ):
        for process in (one, two):
            outputs.append(process.stdout.read())
            process.wait()

    subjects = [line for output in outputs for line in output.splitlines() if line.startswith("Subject: ")]
    results = [line for output in outputs for line in output.splitlines() if line.startswith("RESULT")]
    assert len(results) == 2
    # Per segment: the owner's reminder, the escalation to the backup owner and to ops1.
    assert len(subjects) == 60
    assert len(set(re.findall(r"^To: (\S+)", "\n".join(outputs), re.MULTILINE))) == 41
    assert ReviewReminder.objects.count() == 60
    assert ReviewReminder.objects.filter(emailed_at=None).count() == 0
