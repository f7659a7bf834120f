"""The API schema and its docs need a login or a key in production (issue 24, defect 10)."""

import pytest

pytestmark = pytest.mark.django_db


def test_anonymous_callers_get_neither_schema_nor_docs(client):
    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")

    assert schema.status_code == 401
    assert b"not_authenticated" in schema.content
    assert docs.status_code == 302
    assert docs["Location"] == "/login/?next=/api/docs/"


def test_a_key_of_any_scope_reads_the_schema(api_client):
    response = api_client("personalization:read").get("/api/schema/")

    assert response.status_code == 200
    assert b"/api/v1/contacts/" in response.content


def test_a_signed_in_user_reads_schema_and_docs(client, sales_user):
    client.force_login(sales_user)

    assert client.get("/api/schema/").status_code == 200
    assert "swagger-ui" in client.get("/api/docs/").content.decode()


def test_a_bad_key_is_refused(client):
    response = client.get("/api/schema/", HTTP_AUTHORIZATION="Bearer crmseg_nope_nothing")

    assert response.status_code == 401


def test_the_setting_opens_them_to_everyone(client, settings):
    settings.API_DOCS_PUBLIC = True

    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
