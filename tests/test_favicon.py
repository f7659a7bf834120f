"""Browsers ask for /favicon.ico on every site; it leads to the icon the pages link to."""

from pathlib import Path

from django.contrib.staticfiles import finders


def test_favicon_ico_redirects_to_the_static_icon_that_exists(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"] == "/static/crmseg/favicon.svg"
    found = finders.find("crmseg/favicon.svg")
    assert found
    assert Path(found).read_text().lstrip().startswith("<svg")


def test_pages_link_the_same_icon(client):
    page = client.get("/login/").content.decode()

    assert 'href="/static/crmseg/favicon.svg"' in page
