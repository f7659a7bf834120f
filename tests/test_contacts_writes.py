"""contacts.writes: the one write path for contacts, companies, activities and deals."""

import ast
from pathlib import Path

import pytest
from django.db import transaction
from django.db.models import F
from django_q.conf import Conf

from activation.automations import process_pending
from activation.models import AutomationAction
from contacts import writes
from contacts.models import Activity, Company, Contact, Deal
from segments.editing import save_segment
from segments.models import Membership, MembershipChange, Segment
from segments.refresh import refresh_segment
from tests.announcements import hear_changes
from tests.factories import ActivityFactory, AutomationFactory, CompanyFactory, ContactFactory, DealFactory
from tests.segments_support import history, member_ids

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_APPS = ["activation", "api", "contacts", "crmseg_site", "predictions", "segments"]
WRITTEN = {"Contact", "Company", "Activity", "Deal"}
WRITE_METHODS = {
    "save",
    "update",
    "delete",
    "create",
    "bulk_create",
    "bulk_update",
    "get_or_create",
    "update_or_create",
}
BULK_WRITERS = {"upsert_contacts", "upsert_companies", "ingest_activities", "seed_demo"}
# The write path itself, and the modules it delegates bulk writes to.
WRITE_PATH = {"contacts/writes.py", "contacts/ingest.py", "contacts/demo_data.py"}


@pytest.fixture
def announced(monkeypatch):
    """The contact id lists contacts.changes listeners hear (run on_commit hooks to hear them)."""
    calls = hear_changes(monkeypatch)
    return calls


@pytest.mark.django_db
def test_a_segment_on_lead_score_follows_an_automation_without_a_sweep(monkeypatch, django_capture_on_commit_callbacks):
    # given: a segment of hot leads, and an automation raising the score of whoever joins "Webinar"
    monkeypatch.setattr(Conf, "SYNC", True)
    hot = save_segment(
        Segment(name="Hot", slug="hot", kind="dynamic", rule={"field": "lead_score", "op": "gte", "value": 50})
    )
    webinar = save_segment(Segment(name="Webinar", slug="webinar", kind="static", rule=None))
    automation = AutomationFactory(trigger_segment=webinar)
    AutomationAction.objects.create(automation=automation, position=0, kind="adjust_score", score_delta=60)
    ada, bob = ContactFactory(lead_score=0), ContactFactory(lead_score=0)
    assert refresh_segment(hot.pk).status == "ok"
    Membership.objects.create(segment=webinar, contact=ada)
    MembershipChange.objects.create(segment=webinar, contact=ada, kind="join", reason="manual")

    # when: the automation runs (its score change commits)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = process_pending()

    # then: ada is hot at once, with no refresh of the whole segment in between
    assert outcome.done == 1
    assert Contact.objects.get(pk=ada.pk).lead_score == 60
    assert member_ids(hot) == {ada.pk}
    assert history(hot) == [(ada.pk, "join", "rule")]
    assert Contact.objects.get(pk=bob.pk).lead_score == 0


@pytest.mark.django_db
def test_update_announces_the_rows_contacts_after_commit(announced, django_capture_on_commit_callbacks):
    ada, bob, _carl = ContactFactory(lead_score=1), ContactFactory(lead_score=2), ContactFactory(lead_score=3)
    before = Contact.objects.get(pk=ada.pk).updated_at

    with django_capture_on_commit_callbacks() as callbacks:
        count = writes.update(Contact.objects.filter(pk__in=[ada.pk, bob.pk]), lead_score=F("lead_score") + 10)
        assert announced == []

    for callback in callbacks:
        callback()
    assert count == 2
    assert announced == [sorted([ada.pk, bob.pk])]
    assert sorted(Contact.objects.values_list("lead_score", flat=True)) == [3, 11, 12]
    assert Contact.objects.get(pk=ada.pk).updated_at > before


@pytest.mark.django_db
def test_a_rolled_back_write_announces_nothing(announced, django_capture_on_commit_callbacks):
    ada = ContactFactory(lead_score=1)

    def write_then_fail() -> None:
        with transaction.atomic():
            writes.update(Contact.objects.filter(pk=ada.pk), lead_score=99)
            raise RuntimeError("the caller's later step failed")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        write_then_fail()

    assert announced == []
    assert Contact.objects.get(pk=ada.pk).lead_score == 1


@pytest.mark.django_db
def test_moving_activities_and_deals_announces_both_contacts(announced, django_capture_on_commit_callbacks):
    activity, deal = ActivityFactory(), DealFactory(contact=ContactFactory())
    old_activity_contact, old_deal_contact = activity.contact_id, deal.contact_id
    survivor = ContactFactory()

    with django_capture_on_commit_callbacks(execute=True):
        writes.update(Activity.objects.filter(contact_id=old_activity_contact), contact_id=survivor.pk)
        deal.contact = survivor
        writes.save(deal)

    assert announced == [sorted([old_activity_contact, survivor.pk]), sorted([old_deal_contact, survivor.pk])]
    assert Activity.objects.get().contact_id == Deal.objects.get().contact_id == survivor.pk


@pytest.mark.django_db
def test_company_writes_announce_every_contact_of_the_company(announced, django_capture_on_commit_callbacks):
    acme, other = CompanyFactory(), CompanyFactory()
    staff = ContactFactory.create_batch(2, company=acme)
    ContactFactory(company=other)

    with django_capture_on_commit_callbacks(execute=True):
        acme.employee_count = 900
        writes.save(acme)
        deleted = writes.delete(acme)

    staff_ids = sorted(c.pk for c in staff)
    assert announced == [staff_ids, staff_ids]
    assert deleted == 1
    assert list(Company.objects.all()) == [other]
    assert set(Contact.objects.filter(company=None).values_list("pk", flat=True)) == set(staff_ids)


@pytest.mark.django_db
def test_a_new_contact_is_saved_through_its_model_and_announced(announced, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        contact = writes.save(Contact(email=" Ada@Example.COM", lifecycle_stage="customer"))

    assert announced == [[contact.pk]]
    stored = Contact.objects.get()
    assert stored.email == "ada@example.com"
    assert list(stored.lifecycle_changes.values_list("from_stage", "to_stage")) == [(None, "customer")]
    assert stored.customer_since is not None


@pytest.mark.django_db
def test_fields_whose_meaning_lives_in_save_are_refused_by_update():
    ada = ContactFactory(lifecycle_stage="lead")

    with pytest.raises(ValueError, match=r"Contact\.lifecycle_stage is written with contacts\.writes\.save\(\)"):
        writes.update(Contact.objects.filter(pk=ada.pk), lifecycle_stage="customer")
    with pytest.raises(ValueError, match=r"Company\.domain"):
        writes.update(Company.objects.all(), domain="x.com")

    assert Contact.objects.get(pk=ada.pk).lifecycle_stage == "lead"


@pytest.mark.django_db
def test_other_models_are_refused():
    with pytest.raises(TypeError, match="not Segment"):
        writes.update(Segment.objects.all(), name="x")


def _product_modules():
    for app in PRODUCT_APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" not in relative:
                yield relative, ast.parse(path.read_text(), filename=relative)


def _receiver_names(node: ast.AST) -> set[str]:
    """The names a call chain starts from: `Contact.objects.filter(...).update` -> {"Contact"}."""
    names = set()
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    if isinstance(node, ast.Name):
        names.add(node.id)
    return names


def _names(node: ast.AST) -> str | None:
    """The name a node refers to, as a name, an attribute or an import."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.alias):
        return node.name
    return None


def test_only_the_write_path_announces_or_writes_contact_data():
    offenders = []
    for relative, tree in _product_modules():
        for node in ast.walk(tree):
            if _names(node) == "contacts_changed" and relative not in {"contacts/changes.py", "contacts/writes.py"}:
                offenders.append(f"{relative}:{node.lineno} contacts_changed")
            if relative in WRITE_PATH or relative == "contacts/models.py":
                continue
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITE_METHODS:
                chain = node.func.value
                if _receiver_names(chain) & WRITTEN and "objects" in ast.unparse(chain):
                    offenders.append(f"{relative}:{node.lineno} {ast.unparse(node.func)}")
            if isinstance(node, ast.ImportFrom) and node.module in {"contacts.ingest", "contacts.demo_data"}:
                writers = {a.name for a in node.names} & BULK_WRITERS
                if writers:
                    offenders.append(f"{relative}:{node.lineno} imports {sorted(writers)}")
    assert offenders == [], offenders
