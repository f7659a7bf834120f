"""Every failure is JSON with a code, a message and where: parse errors, 404, 405, filters, cursors."""

import pytest
import yaml
from django.core.management import call_command

from tests.factories import ContactFactory


@pytest.fixture
def reader(api_client):
    return api_client("contacts:read", "contacts:write")


def test_malformed_json_is_400_parse_error(reader):
    response = reader.generic("POST", "/api/v1/contacts/", '{"email": ', content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert "JSON parse error" in error["message"]


def test_wrong_media_type_is_415(reader):
    response = reader.generic(
        "POST", "/api/v1/contacts/", "email=a@b.c", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_validation_error_names_the_field(reader):
    response = reader.post("/api/v1/contacts/", {"email": "nope", "lead_score": "many"}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["field"] == "email"
    assert {e["path"] for e in error["details"]["errors"]} == {"email", "lead_score"}


def test_unknown_filter_is_400_naming_it(reader):
    response = reader.get("/api/v1/contacts/", {"lifecycle": "mql"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("unknown_parameter", "lifecycle")
    assert "lifecycle_stage" in error["message"]


def test_bad_filter_value_is_400_naming_it(reader):
    response = reader.get("/api/v1/contacts/", {"lifecycle_stage": "wizard"})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "lifecycle_stage"


@pytest.mark.parametrize("cursor", ["garbage!", "cD1hYmM=", "bz0tMQ=="])  # not base64; p=abc; o=-1
def test_a_cursor_no_page_has_is_404(reader, cursor):
    ContactFactory()

    response = reader.get("/api/v1/contacts/", {"cursor": cursor})

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "invalid_cursor",
        "message": "No page has this cursor: pass back the `next` or `previous` link of a page unchanged.",
        "field": "cursor",
        "details": None,
    }


@pytest.mark.parametrize("size", ["0", "abc", "501"])
def test_bad_page_size_is_400(reader, size):
    response = reader.get("/api/v1/contacts/", {"page_size": size})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "page_size"


def test_unknown_api_url_is_json_404(reader):
    for url in ["/api/v1/nothing-here/", "/api/v2/contacts/"]:
        response = reader.get(url)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_is_405(reader):
    response = reader.delete("/api/v1/contacts/")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response["Allow"]


def test_huge_id_filter_is_not_a_server_error(reader):
    response = reader.get("/api/v1/contacts/", {"company": "99999999999999999999999"})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "company"
    assert reader.get("/api/v1/contacts/99999999999999999999999/").status_code == 404


def test_schema_generates_without_warnings(tmp_path, db):
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    schema = yaml.safe_load(target.read_text())
    paths = schema["paths"]
    assert "/api/v1/contacts/bulk-upsert/" in paths
    assert "413" in paths["/api/v1/activities/bulk/"]["post"]["responses"]
    assert "Error" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_schema_and_docs_are_served_without_cdn(client, ops_user):
    client.force_login(ops_user)
    assert client.get("/api/schema/").status_code == 200

    html = client.get("/api/docs/").content.decode()

    assert "swagger-ui" in html
    assert "http://" not in html.replace("http://testserver", "")
    assert "https://" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
