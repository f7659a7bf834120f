"""The boundary test and dimension comparison pages in the admin."""

import pytest
from django.urls import reverse

from segments.models import Segment
from tests.test_segment_boundaries import plant

QUERY = {
    "field": "company.employee_count",
    "bracketings": "1, 50, 250\n1, 100, 500",
    "outcome": "converted",
    "days": 90,
}


@pytest.mark.django_db
def test_the_boundary_page_names_the_better_bracketing(client, ops_user):
    plant(1500)
    client.force_login(ops_user)

    page = client.get(reverse("admin:segments_boundaries"), QUERY)

    html = page.content.decode()
    assert page.status_code == 200
    assert "Bracketing 2 (1–99 / 100–499 / 500+) separates converted more" in html
    assert "Create the suggested segments" in html


@pytest.mark.django_db
def test_a_bracketing_is_turned_into_segments_with_one_click(client, ops_user):
    client.force_login(ops_user)

    response = client.post(
        reverse("admin:segments_boundaries"), {**QUERY, "create": "1", "prefix": "Firm"}, follow=True
    )

    assert "Created 3 segments (their first build is queued)" in response.content.decode()
    assert set(Segment.objects.values_list("name", flat=True)) == {
        "Firm Company employee count 1–99",
        "Firm Company employee count 100–499",
        "Firm Company employee count 500+",
    }


@pytest.mark.django_db
def test_starting_points_that_do_not_ascend_are_refused_by_line(client, ops_user):
    client.force_login(ops_user)

    page = client.get(reverse("admin:segments_boundaries"), {**QUERY, "bracketings": "1, 50, 250\n1, 500, 100"})

    assert "Line 2: starting points must ascend (500 then 100)." in page.content.decode()


@pytest.mark.django_db
def test_the_dimension_page_names_the_winner(client, ops_user):
    plant(1500)
    client.force_login(ops_user)

    page = client.get(
        reverse("admin:segments_dimensions"),
        {"schemes": ["behavioral", "lifecycle"], "outcome": "converted", "days": 90},
    )

    assert page.status_code == 200
    assert "Engagement level × top topic explains most of converted" in page.content.decode()


@pytest.mark.django_db
def test_the_pages_need_view_permission_on_segments(client, django_user_model):
    staff = django_user_model.objects.create_user("clerk", password="clerk-password-123", is_staff=True)
    client.force_login(staff)

    assert client.get(reverse("admin:segments_boundaries"), QUERY).status_code == 403
    assert client.get(reverse("admin:segments_dimensions")).status_code == 403
