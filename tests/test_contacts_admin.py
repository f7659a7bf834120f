from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contacts.models import Activity, Company, Contact, LifecycleChange
from contacts.paging import LargeTablePaginator
from tests.admin_forms import change_form_data
from tests.announcements import hear_changes
from tests.factories import (
    ActivityFactory,
    CompanyFactory,
    ContactFactory,
    DealFactory,
    PropertyDefinitionFactory,
    UserFactory,
)


@pytest.fixture
def ops_client(client, ops_user):
    client.force_login(ops_user)
    return client


@pytest.fixture
def announced(monkeypatch):
    """The contact id lists passed to contacts_changed listeners."""
    calls = hear_changes(monkeypatch)
    return calls


def _rows(model: str, n: int) -> None:
    owner = UserFactory()
    if model == "contact":
        for company in CompanyFactory.create_batch(n):
            ContactFactory(company=company, owner=owner)
    elif model == "company":
        for company in CompanyFactory.create_batch(n):
            ContactFactory.create_batch(2, company=company)
    elif model == "activity":
        ActivityFactory.create_batch(n)
    elif model == "deal":
        for company in CompanyFactory.create_batch(n):
            DealFactory(company=company)
    elif model == "lifecyclechange":
        ContactFactory.create_batch(n)
    elif model == "propertydefinition":
        PropertyDefinitionFactory.create_batch(n)


def _queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize("model", ["contact", "company", "activity", "deal", "lifecyclechange", "propertydefinition"])
def test_change_list_runs_the_same_queries_for_5_and_50_rows(ops_client, django_assert_num_queries, model):
    url = reverse(f"admin:contacts_{model}_changelist")
    _rows(model, 5)
    with_5 = _queries_for(ops_client, url)
    _rows(model, 45)

    with django_assert_num_queries(with_5):
        response = ops_client.get(url)

    assert len(response.context["cl"].result_list) == 50
    assert with_5 <= 12


def test_filtering_the_contact_change_list_adds_no_queries(ops_client, django_assert_max_num_queries):
    for company in CompanyFactory.create_batch(30):
        ContactFactory(company=company, owner=UserFactory())
    url = reverse("admin:contacts_contact_changelist")
    expected = _queries_for(ops_client, url)

    # (unfiltered, PostgreSQL first asks the planner for an estimate; filtered lists count exactly)
    with django_assert_max_num_queries(expected):
        ops_client.get(url + "?lifecycle_stage__exact=lead&employees=51-200")


def test_contact_change_form_queries_do_not_grow_with_activities(ops_client):
    few = ContactFactory()
    ActivityFactory.create_batch(3, contact=few)
    many = ContactFactory()
    ActivityFactory.create_batch(60, contact=many)
    ops_client.get(reverse("admin:contacts_contact_change", args=[few.pk]))  # warm caches (content types)

    with_3 = _queries_for(ops_client, reverse("admin:contacts_contact_change", args=[few.pk]))
    with_60 = _queries_for(ops_client, reverse("admin:contacts_contact_change", args=[many.pk]))

    assert with_3 == with_60


def test_contact_page_shows_the_latest_20_activities_newest_first_and_links_to_all(ops_client):
    contact = ContactFactory()
    now = timezone.now()
    for days in range(30):
        ActivityFactory(contact=contact, occurred_at=now - timedelta(days=days), topic=f"topic-{days:02d}")
    ActivityFactory(topic="someone-else")

    page = ops_client.get(reverse("admin:contacts_contact_change", args=[contact.pk]))

    inline = next(i for i in page.context["inline_admin_formsets"] if i.formset.model is Activity)
    shown = [row.instance.topic for row in inline.formset.forms]
    assert shown == [f"topic-{days:02d}" for days in range(20)]
    link = reverse("admin:contacts_activity_changelist") + f"?contact__id__exact={contact.pk}"
    assert f'href="{link}"' in page.content.decode()
    assert "30 activities" in page.content.decode()
    activities = ops_client.get(link)
    assert activities.context["cl"].result_count == 30


def test_contact_page_lists_lifecycle_history_newest_first(ops_client):
    contact = ContactFactory(lifecycle_stage="lead")
    for stage in ["mql", "sql", "customer"]:
        contact.lifecycle_stage = stage
        contact.save()

    page = ops_client.get(reverse("admin:contacts_contact_change", args=[contact.pk]))

    inline = next(i for i in page.context["inline_admin_formsets"] if i.formset.model is LifecycleChange)
    assert [row.instance.to_stage for row in inline.formset.forms] == ["customer", "sql", "mql", "lead"]


def test_employee_band_filter_keeps_companies_in_the_band(ops_client):
    CompanyFactory(name="Tiny", employee_count=8)
    CompanyFactory(name="Mid", employee_count=150)
    CompanyFactory(name="Huge", employee_count=42000)

    response = ops_client.get(reverse("admin:contacts_company_changelist") + "?employees=51-200")
    big = ops_client.get(reverse("admin:contacts_company_changelist") + "?employees=5001%2B")

    assert [c.name for c in response.context["cl"].result_list] == ["Mid"]
    assert [c.name for c in big.context["cl"].result_list] == ["Huge"]


def test_company_list_shows_contact_counts(ops_client):
    company = CompanyFactory(name="Acme")
    ContactFactory.create_batch(3, company=company)

    response = ops_client.get(reverse("admin:contacts_company_changelist"))

    assert response.context["cl"].result_list[0].contact_count == 3


def test_saving_a_contact_in_the_admin_announces_it(ops_client, announced, django_capture_on_commit_callbacks):
    contact = ContactFactory()
    url = reverse("admin:contacts_contact_change", args=[contact.pk])
    data = change_form_data(ops_client.get(url))
    data["lifecycle_stage"] = "mql"

    with django_capture_on_commit_callbacks(execute=True):
        response = ops_client.post(url, data)

    assert response.status_code == 302
    assert announced == [[contact.pk]]


def test_saving_a_company_announces_all_its_contacts(ops_client, announced, django_capture_on_commit_callbacks):
    company = CompanyFactory()
    members = ContactFactory.create_batch(3, company=company)
    ContactFactory()
    url = reverse("admin:contacts_company_change", args=[company.pk])
    data = change_form_data(ops_client.get(url))
    data["employee_count"] = "900"

    with django_capture_on_commit_callbacks(execute=True):
        response = ops_client.post(url, data)

    assert response.status_code == 302
    assert announced == [sorted(c.pk for c in members)]


def test_moving_an_activity_announces_both_contacts(ops_client, announced, django_capture_on_commit_callbacks):
    activity = ActivityFactory()
    old_contact = activity.contact
    new_contact = ContactFactory()
    url = reverse("admin:contacts_activity_change", args=[activity.pk])
    data = change_form_data(ops_client.get(url))
    data["contact"] = str(new_contact.pk)

    with django_capture_on_commit_callbacks(execute=True):
        response = ops_client.post(url, data)

    assert response.status_code == 302
    assert announced == [sorted([old_contact.pk, new_contact.pk])]


def test_deleting_contacts_with_the_bulk_action_announces_them(
    ops_client, announced, django_capture_on_commit_callbacks
):
    doomed = ContactFactory.create_batch(2)
    ContactFactory()
    data = {"action": "delete_selected", "_selected_action": [c.pk for c in doomed], "post": "yes"}

    with django_capture_on_commit_callbacks(execute=True):
        response = ops_client.post(reverse("admin:contacts_contact_changelist"), data)

    assert response.status_code == 302
    assert announced == [sorted(c.pk for c in doomed)]
    assert Contact.objects.count() == 1


def test_lifecycle_history_is_read_only_in_the_admin(ops_client):
    change = ContactFactory().lifecycle_changes.get()

    response = ops_client.get(reverse("admin:contacts_lifecyclechange_change", args=[change.pk]))
    add = ops_client.get(reverse("admin:contacts_lifecyclechange_add"))

    assert response.status_code == 200
    assert not response.context["has_change_permission"]
    assert add.status_code == 403


def test_paginator_counts_filtered_lists_exactly(db):
    CompanyFactory.create_batch(3, industry="retail")
    CompanyFactory.create_batch(2, industry="software")

    paginator = LargeTablePaginator(Company.objects.filter(industry="retail"), 50)

    assert paginator.count == 3


def test_paginator_reads_the_planner_estimate_for_a_big_unfiltered_table(db, django_assert_num_queries):
    CompanyFactory.create_batch(5)
    paginator = LargeTablePaginator(Company.objects.all(), 50)
    paginator.estimate_from = 1
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE contacts_company")

    with CaptureQueriesContext(connection) as captured:
        count = paginator.count

    assert count == 5
    if connection.vendor == "postgresql":
        assert [q["sql"] for q in captured if "pg_class" in q["sql"]]
        assert not [q["sql"] for q in captured if "COUNT(" in q["sql"].upper()]
    else:
        assert "COUNT(" in captured[-1]["sql"].upper()


def test_operations_can_pick_companies_and_owners_by_autocomplete(ops_client):
    CompanyFactory(name="Acme Rockets", domain="acme-rockets.com")
    UserFactory(username="alex.rivera")
    url = reverse("admin:autocomplete")
    common = {"app_label": "contacts", "model_name": "contact"}

    companies = ops_client.get(url, {**common, "field_name": "company", "term": "Acme"})
    owners = ops_client.get(url, {**common, "field_name": "owner", "term": "alex"})

    assert [r["text"] for r in companies.json()["results"]] == ["Acme Rockets (acme-rockets.com)"]
    assert [r["text"] for r in owners.json()["results"]] == ["alex.rivera"]
