from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from contacts.roles import sync_roles
from tests.admin_forms import change_form_data
from tests.factories import ContactFactory


def _codenames(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_operations_holds_every_permission_of_contacts_predictions_segments_and_activation(db):
    expected = {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Permission.objects.filter(
            content_type__app_label__in=["contacts", "predictions", "segments", "activation"]
        ).select_related("content_type")
    }

    assert expected
    assert "segments.change_segment" in expected
    assert "predictions.change_propensitymodel" in expected
    assert expected | {"auth.view_user"} == _codenames("Operations")


def test_sales_can_only_view_contacts_companies_activities_and_deals(db):
    assert _codenames("Sales") == {
        "contacts.view_contact",
        "contacts.view_company",
        "contacts.view_lifecyclechange",
        "contacts.view_activity",
        "contacts.view_deal",
    }


def test_sync_roles_grants_permissions_of_models_added_later(db):
    # given: a permission that appeared after the groups were last synced (a new model)
    new_model = ContentType.objects.create(app_label="contacts", model="newthing")
    late = Permission.objects.create(codename="export_newthing", name="Can export new thing", content_type=new_model)

    # when
    sync_roles()

    # then
    assert Group.objects.get(name="Operations").permissions.filter(pk=late.pk).exists()
    assert not Group.objects.get(name="Sales").permissions.filter(pk=late.pk).exists()


def test_sync_roles_undoes_hand_edits_to_the_sales_group(db):
    sales = Group.objects.get(name="Sales")
    sales.permissions.add(Permission.objects.get(codename="change_contact"))

    sync_roles()

    assert not sales.permissions.filter(codename="change_contact").exists()


def test_operations_user_edits_a_contact_in_the_admin(client, ops_user):
    contact = ContactFactory(lead_score=10)
    client.force_login(ops_user)
    url = reverse("admin:contacts_contact_change", args=[contact.pk])

    page = client.get(url)
    data = change_form_data(page)
    data["lead_score"] = "55"
    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    contact.refresh_from_db()
    assert contact.lead_score == 55


def test_sales_user_cannot_reach_the_admin(client, sales_user):
    client.force_login(sales_user)

    index = client.get(reverse("admin:index"))
    changelist = client.get(reverse("admin:contacts_contact_changelist"))

    # A plain refusal (crmseg_site.access.AdminAccessMiddleware), not the admin's login form.
    assert index.status_code == 403
    assert changelist.status_code == 403


def test_sales_user_may_view_but_not_change_contacts(sales_user):
    assert sales_user.has_perm("contacts.view_contact")
    assert sales_user.has_perm("contacts.view_company")
    assert not sales_user.has_perm("contacts.change_contact")
    assert not sales_user.has_perm("contacts.add_company")
    assert not sales_user.has_perm("segments.view_segment")
    assert not sales_user.is_staff
    assert {p.split(".")[1].split("_")[0] for p in sales_user.get_all_permissions()} == {"view"}


def test_the_admin_index_links_every_report_and_test_page_and_each_opens(client, ops_user):
    """The pages outside the model lists (governance, analytics, boundary and dimension tests,
    coverage, duplicates) are reachable from the admin's first page."""
    client.force_login(ops_user)
    index = client.get(reverse("admin:index")).content.decode()
    pages = [
        reverse("admin:segments_governance"),
        reverse("segments-analytics"),
        reverse("segments-overlap"),
        reverse("admin:segments_boundaries"),
        reverse("admin:segments_dimensions"),
        reverse("admin:segments_coverage"),
        reverse("admin:contacts_duplicatecandidate_changelist"),
        reverse("admin:contacts_companyduplicatecandidate_changelist"),
    ]
    for url in pages:
        assert f'href="{url}"' in index
        assert client.get(url).status_code == 200, url
