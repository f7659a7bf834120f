"""Who may open which page: Sales reps read contact pages, only staff enter the admin."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_login_page_renders_in_the_product_look(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Log in to crmseg" in html
    assert "crmseg/app.css" in html
    assert 'for="id_username"' in html
    assert 'for="id_password"' in html


def test_login_with_wrong_password_says_so(client, sales_user):
    response = client.post(reverse("login"), {"username": "rep", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_sales_rep_logs_in_and_lands_on_contact_search(client, sales_user):
    response = client.post(reverse("login"), {"username": "rep", "password": "rep-password-123"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("contacts-search")
    assert response.status_code == 200


def test_logout_ends_the_session(client, sales_user):
    client.force_login(sales_user)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("contacts-search")).status_code == 302


def test_anonymous_visitor_is_sent_to_login(client):
    contact = ContactFactory()
    for url in (reverse("contacts-search"), reverse("contacts-detail", args=[contact.pk]), reverse("home")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/contacts/contact/", "/admin/auth/user/", "/admin/segments/segment/add/"]
)
def test_sales_rep_is_refused_the_admin(client, sales_user, path):
    client.force_login(sales_user)
    response = client.get(path)
    assert response.status_code == 403
    assert "operations admin is for Operations staff" in response.content.decode()


def test_sales_rep_is_refused_writes_in_the_admin(client, sales_user):
    contact = ContactFactory(first_name="Before")
    client.force_login(sales_user)
    response = client.post(f"/admin/contacts/contact/{contact.pk}/change/", {"first_name": "After"})
    assert response.status_code == 403
    contact.refresh_from_db()
    assert contact.first_name == "Before"


def test_sales_rep_is_refused_writes_on_contact_pages(client, sales_user):
    contact = ContactFactory()
    client.force_login(sales_user)
    assert client.post(reverse("contacts-detail", args=[contact.pk]), {"x": "1"}).status_code == 403
    assert client.post(reverse("contacts-search"), {"q": "x"}).status_code == 403


def test_anonymous_visitor_still_gets_the_admin_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_user_without_a_role_is_refused_contact_pages(client):
    stranger = get_user_model().objects.create_user("stranger", password="stranger-password-1")
    client.force_login(stranger)
    assert client.get(reverse("contacts-search")).status_code == 403
    assert client.get(reverse("home")).status_code == 403


def test_sales_rep_sees_no_admin_links(client, sales_user):
    contact = ContactFactory()
    client.force_login(sales_user)
    for url in (reverse("contacts-search"), reverse("contacts-detail", args=[contact.pk])):
        html = client.get(url).content.decode()
        assert "/admin/" not in html
        assert "Edit in admin" not in html


def test_operations_staff_see_admin_and_edit_links(client, ops_user):
    contact = ContactFactory()
    client.force_login(ops_user)
    html = client.get(reverse("contacts-detail", args=[contact.pk])).content.decode()
    assert f'href="/admin/contacts/contact/{contact.pk}/change/"' in html
    assert 'href="/admin/"' in html
    assert client.get("/admin/").status_code == 200
