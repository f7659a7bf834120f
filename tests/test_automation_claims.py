"""Claimed automation batches: a worker killed holding a claim loses it within seconds (not 15
minutes), another worker finishes the batch, and every action is still applied exactly once; a live
worker slower than the lease keeps its claim because it renews it."""

import threading
import time

import pytest
from django.db import connection

from activation import automations
from activation.automation_models import ActionKind, AutomationAction, AutomationRun
from activation.automations import claim_runs, process_pending
from contacts.models import Contact
from segments.models import Membership, MembershipChange
from tests.factories import AutomationFactory, ContactFactory
from tests.processes import kill, python, wait_for

# Process automations in another process, stopping for good inside the transaction of the score
# action, after its UPDATE of the contacts (so the kill also rolls that UPDATE back).
HANGING_WORKER = """
import time
from activation import automations
from activation.automation_models import ActionKind
adjust = automations.WRITE[ActionKind.ADJUST_SCORE]
def adjust_and_hang(automation, action, runs):
    adjust(automation, action, runs)
    print("adjusted", len(runs), flush=True)
    time.sleep(300)
automations.WRITE[ActionKind.ADJUST_SCORE] = adjust_and_hang
automations.process_pending()
"""


@pytest.fixture
def fast(settings):
    settings.RUN_HEARTBEAT_SECONDS = 1
    settings.AUTOMATION_CLAIM_LEASE_SECONDS = 3
    return settings


def _scoring_automation(contacts: int) -> tuple[list[Contact], AutomationAction]:
    automation = AutomationFactory()
    action = AutomationAction.objects.create(automation=automation, position=0, kind="adjust_score", score_delta=10)
    people = ContactFactory.create_batch(contacts, lead_score=0)
    Membership.objects.bulk_create(Membership(segment=automation.trigger_segment, contact=c) for c in people)
    MembershipChange.objects.bulk_create(
        MembershipChange(segment=automation.trigger_segment, contact=c, kind="join", reason="rule") for c in people
    )
    return people, action


def _scores(people: list[Contact]) -> list[int]:
    return list(
        Contact.objects.filter(pk__in=[c.pk for c in people]).order_by("pk").values_list("lead_score", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_a_batch_claimed_by_a_killed_worker_is_taken_over_and_applied_exactly_once(fast):
    # given a worker process that claimed all 30 runs and is killed in the middle of the score action
    people, _ = _scoring_automation(30)
    with python(HANGING_WORKER, AUTOMATION_CLAIM_LEASE_SECONDS=3) as process:
        assert process.stdout.readline().split() == ["adjusted", "30"]
        held = AutomationRun.objects.filter(status="running")
        assert held.count() == 30
        assert set(held.values_list("claimed_by", flat=True)) == {
            f"{held[0].claimed_by.rpartition(':')[0]}:{process.pid}"
        }
        killed_at = time.monotonic()
        kill(process.pid)
        process.wait()

    # when another worker looks for work until the claim's lease (3 s here, not 15 minutes) runs out
    outcome = wait_for(lambda: _claiming(process_pending()), timeout=20, what="the lease to run out")

    # then it took the batch over within seconds and the score moved once per run, never twice
    assert time.monotonic() - killed_at < 10
    assert (outcome.claimed, outcome.done) == (30, 30)
    assert _scores(people) == [10] * 30
    runs = AutomationRun.objects.all()
    assert {(r.status, r.attempts) for r in runs} == {("done", 2)}
    assert process_pending().claimed == 0
    assert _scores(people) == [10] * 30


def _claiming(outcome):
    return outcome if outcome.claimed else None


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_slower_than_the_lease_keeps_its_claim(fast, monkeypatch):
    # given a worker (a thread with its own connection) whose action waits twice the lease for an
    # outside call (as a slow webhook receiver would make it, outside any transaction)
    people, _ = _scoring_automation(5)
    working = threading.Event()

    def slow_call(automation, action, runs):
        working.set()
        time.sleep(2 * fast.AUTOMATION_CLAIM_LEASE_SECONDS)

    monkeypatch.setitem(automations.DELIVER, ActionKind.ADJUST_SCORE, slow_call)
    outcomes = []
    worker = threading.Thread(target=lambda: (outcomes.append(process_pending()), connection.close()))
    worker.start()
    assert working.wait(timeout=30)

    # when other workers look for work while it is still busy, after the lease would have run out
    time.sleep(fast.AUTOMATION_CLAIM_LEASE_SECONDS + 1)
    assert claim_runs(limit=10) == []
    worker.join(timeout=30)

    # then the first worker finished its batch and nobody applied it twice
    assert (outcomes[0].claimed, outcomes[0].done) == (5, 5)
    assert _scores(people) == [10] * 5
    assert {(r.status, r.attempts) for r in AutomationRun.objects.all()} == {("done", 1)}
