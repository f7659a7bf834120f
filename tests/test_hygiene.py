"""List hygiene (contacts/hygiene.py): each contact's reachability, set-based; typo corrections;
the unreachable suppression; the admin actions and report."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from contacts.hygiene import check_hygiene, correct_domain_typos
from contacts.models import Contact, HygieneRun, Reachability
from segments.catalog import CATALOG
from segments.models import Segment
from segments.refresh import refresh_segment
from tests.factories import ActivityFactory, ContactFactory
from tests.segments_support import member_ids

LONG_AGO = timedelta(days=400)


@pytest.fixture
def addresses(db):
    """One contact per reachability, plus an old contact still engaging."""
    now = timezone.now()
    made = {
        "ok": ContactFactory(email="ada@example.com"),
        "invalid": ContactFactory(email="ada@localhost"),
        "unsubscribed": ContactFactory(email="u@example.com", email_status="unsubscribed"),
        "bounced": ContactFactory(email="b@example.com", email_status="bounced"),
        "disposable": ContactFactory(email="x@mailinator.com"),
        "typo": ContactFactory(email="grace@gmial.com"),
        "role": ContactFactory(email="info@acme.example"),
        "inactive": ContactFactory(email="old@example.com"),
        "old_but_engaged": ContactFactory(email="loyal@example.com"),
        "old_sales_touched": ContactFactory(email="touched@example.com"),
    }
    Contact.objects.filter(pk__in=[made[k].pk for k in ("inactive", "old_but_engaged", "old_sales_touched")]).update(
        created_at=now - LONG_AGO
    )
    ActivityFactory(contact=made["old_but_engaged"], kind="email_click", occurred_at=now - timedelta(days=30))
    ActivityFactory(contact=made["old_sales_touched"], kind="sales_touch", occurred_at=now - timedelta(days=30))
    ActivityFactory(contact=made["inactive"], kind="email_open", occurred_at=now - LONG_AGO)
    return {name: c.pk for name, c in made.items()}


def _reach() -> dict[int, str]:
    return dict(Contact.objects.values_list("pk", "reachability"))


def test_each_contact_gets_its_first_problem(addresses):
    checked = check_hygiene()

    reach = _reach()
    assert {name: reach[pk] for name, pk in addresses.items()} == {
        "ok": Reachability.REACHABLE,
        "invalid": Reachability.INVALID,
        "unsubscribed": Reachability.UNSUBSCRIBED,
        "bounced": Reachability.BOUNCED,
        "disposable": Reachability.DISPOSABLE,
        "typo": Reachability.DOMAIN_TYPO,
        "role": Reachability.ROLE,
        "inactive": Reachability.INACTIVE,
        "old_but_engaged": Reachability.REACHABLE,
        "old_sales_touched": Reachability.INACTIVE,  # our own touch is not engagement
    }
    run = checked.run
    assert (run.contacts, run.changed) == (10, 8)
    assert run.counts[Reachability.REACHABLE] == 2
    assert run.typo_domains == {"gmial.com": "gmail.com"}


def test_a_second_check_changes_nothing_and_keeps_updated_at(addresses):
    check_hygiene()
    stamps = dict(Contact.objects.values_list("pk", "updated_at"))

    again = check_hygiene()

    assert again.run.changed == 0
    assert dict(Contact.objects.values_list("pk", "updated_at")) == stamps


def test_the_check_is_a_fixed_number_of_statements(addresses):
    check_hygiene()
    with CaptureQueriesContext(connection) as few:
        check_hygiene()
    for n in range(20):
        ContactFactory(email=f"sales{n}@firm{n}.example")
    with CaptureQueriesContext(connection) as more:
        check_hygiene()

    assert len(more.captured_queries) == len(few.captured_queries) <= 12


def test_a_contact_that_engages_again_becomes_reachable(addresses):
    check_hygiene()
    ActivityFactory(contact_id=addresses["inactive"], kind="site_visit", occurred_at=timezone.now())

    check_hygiene(contact_ids=[addresses["inactive"]])

    assert _reach()[addresses["inactive"]] == Reachability.REACHABLE


def _bounced(email: str, *, hard: int = 0, soft_days_ago: tuple[int, ...] = (), then: str = "") -> int:
    """A contact with `hard` hard bounce reports (yesterday), soft ones that many days ago, and
    optionally an activity of kind `then` an hour ago."""
    now = timezone.now()
    contact = ContactFactory(email=email)
    for _ in range(hard):
        ActivityFactory(contact=contact, kind="email_bounce_hard", occurred_at=now - timedelta(days=1))
    for days in soft_days_ago:
        ActivityFactory(contact=contact, kind="email_bounce_soft", occurred_at=now - timedelta(days=days, hours=1))
    if then:
        ActivityFactory(contact=contact, kind=then, occurred_at=now - timedelta(hours=1))
    return contact.pk


def test_hard_bounces_count_at_once_and_soft_ones_past_the_threshold(db):
    contacts = {
        "hard": _bounced("hard@example.com", hard=1),
        "hard_then_opened": _bounced("opened@example.com", hard=1, then="email_open"),
        "hard_then_visited": _bounced("visited@example.com", hard=1, then="site_visit"),  # not mail received
        "three_soft": _bounced("full@example.com", soft_days_ago=(1, 10, 29)),
        "two_soft": _bounced("busy@example.com", soft_days_ago=(1, 10)),
        "three_soft_one_old": _bounced("aged@example.com", soft_days_ago=(1, 10, 31)),
        "soft_and_hard": _bounced("both@example.com", hard=1, soft_days_ago=(1, 2, 3)),
    }

    check_hygiene()

    reach = _reach()
    assert {name: reach[pk] for name, pk in contacts.items()} == {
        "hard": Reachability.BOUNCED,
        "hard_then_opened": Reachability.REACHABLE,
        "hard_then_visited": Reachability.BOUNCED,
        "three_soft": Reachability.SOFT_BOUNCED,
        "two_soft": Reachability.REACHABLE,
        "three_soft_one_old": Reachability.REACHABLE,
        "soft_and_hard": Reachability.BOUNCED,  # the first problem found
    }


def test_the_soft_bounce_threshold_is_a_setting(db, settings):
    settings.HYGIENE_SOFT_BOUNCE_LIMIT, settings.HYGIENE_SOFT_BOUNCE_DAYS = 2, 7
    within, spread = _bounced("a@example.com", soft_days_ago=(1, 6)), _bounced("b@example.com", soft_days_ago=(1, 8))

    check_hygiene()

    assert (_reach()[within], _reach()[spread]) == (Reachability.SOFT_BOUNCED, Reachability.REACHABLE)


def test_soft_bounces_age_out_and_are_not_engagement(db):
    contact = _bounced("later@example.com", soft_days_ago=(1, 2, 3))
    Contact.objects.filter(pk=contact).update(created_at=timezone.now() - LONG_AGO)
    check_hygiene()
    assert _reach()[contact] == Reachability.SOFT_BOUNCED

    check_hygiene(now=timezone.now() + timedelta(days=31))

    # the reports are too old to count, and none of them was engagement: inactive, not reachable
    assert _reach()[contact] == Reachability.INACTIVE


def test_correcting_typos_keeps_what_was_typed_and_leaves_collisions(db):
    grace = ContactFactory(email="grace@gmial.com")
    twin = ContactFactory(email="ada@hotmial.com")
    ContactFactory(email="ada@hotmail.com")

    corrected, left = correct_domain_typos([grace.pk, twin.pk])

    assert (corrected, left) == (1, ["ada@hotmial.com"])
    grace.refresh_from_db()
    assert grace.email == "grace@gmail.com"
    assert grace.original_values["email"] == "grace@gmial.com"
    assert grace.reachability == Reachability.REACHABLE


def test_the_unreachable_suppression_holds_every_unreachable_contact(addresses):
    entry = next(e for e in CATALOG if e["slug"] == "suppress-unreachable")
    suppression = Segment.objects.create(**entry)
    check_hygiene()

    refresh_segment(suppression.pk)

    unreachable = {pk for name, pk in addresses.items() if name not in ("ok", "old_but_engaged")}
    assert member_ids(suppression) == unreachable


def test_admin_actions_check_and_correct_the_selected(client, ops_user, addresses):
    client.force_login(ops_user)
    url = reverse("admin:contacts_contact_changelist")

    response = client.post(
        url, {"action": "check_hygiene", "_selected_action": [addresses["role"], addresses["typo"]]}, follow=True
    )
    assert "List hygiene: 2 contacts checked, 2 changed" in response.content.decode()
    assert _reach()[addresses["ok"]] == Reachability.REACHABLE
    assert HygieneRun.objects.get().full is False

    response = client.post(
        url, {"action": "correct_domain_typos", "_selected_action": [addresses["typo"]]}, follow=True
    )
    assert "1 address(es) corrected" in response.content.decode()
    assert Contact.objects.get(pk=addresses["typo"]).email == "grace@gmail.com"

    filtered = client.get(url, {"reachability__exact": "role_address"}).content.decode()
    assert "info@acme.example" in filtered
    assert "ada@example.com" not in filtered


def test_the_hygiene_report_lists_runs_and_queues_a_full_check(
    client, ops_user, addresses, django_capture_on_commit_callbacks
):
    check_hygiene()
    client.force_login(ops_user)
    url = reverse("admin:contacts_hygienerun_changelist")

    page = client.get(url).content.decode()
    assert "Mistyped domain: 1" in page
    assert "Check every contact now" in page

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:contacts_hygienerun_check"))
    assert [task.func() for task in OrmQ.objects.all()] == ["contacts.tasks.check_hygiene"]
