"""Operations export a segment from its page ("Export…", "Run now") and read why members were held
back; the admin's segment, activation and export run lists fit a 1,400 px screen."""

import pytest
from playwright.sync_api import expect

from activation.exports import execute_run, start_run
from activation.models import ExportRun
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory, SegmentFactory

pytestmark = pytest.mark.django_db(transaction=True)

WIDE = {"width": 1400, "height": 1000}


@pytest.fixture
def activation(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path
    segment = SegmentFactory(slug="webinar-leads", name="Webinar leads", kind="static", rule=None)
    opt_out = SegmentFactory(kind="suppression", name="Opt-out list")
    legal = SegmentFactory(kind="suppression", name="Legal hold", is_global=True)
    people = [ContactFactory() for _ in range(6)]
    people[4].do_not_contact = True
    people[4].save()
    for contact in people:
        Membership.objects.create(segment=segment, contact=contact)
    Membership.objects.create(segment=opt_out, contact=people[0])
    Membership.objects.create(segment=opt_out, contact=people[1])
    Membership.objects.create(segment=legal, contact=people[2])
    activation = ActivationFactory(
        name="Webinar leads to the CRM file",
        segment=segment,
        destination=DestinationFactory(kind="csv", name="Shared drive", csv_columns=["email"]),
    )
    activation.suppression_segments.add(opt_out)
    return activation


def test_operations_run_an_export_from_the_segment_page_and_read_the_breakdown(
    page, ops_user, log_in_as, screenshot, run_queued_tasks, activation
):
    page.set_viewport_size(WIDE)
    log_in_as(ops_user)
    page.goto(f"/segments/{activation.segment_id}/")
    page.get_by_role("link", name="Export…").click()
    card = page.locator(f"[data-activation='{activation.pk}']")
    expect(card).to_contain_text("Suppression lists: Opt-out list")
    expect(card).to_contain_text("No runs yet.")
    card.get_by_role("button", name="Run now").click()
    expect(page.locator("#messages")).to_contain_text("is queued")
    assert run_queued_tasks() == 1
    page.reload()
    run = ExportRun.objects.get()
    row = page.locator(f"tr[data-run='{run.pk}']")
    expect(row).to_contain_text("Succeeded")
    held = row.locator("ul.held-back li")
    expect(held).to_have_text(
        [
            "Suppression list of this activation: Opt-out list: 2",
            "Do not contact: 1",
            "Global suppression list: Legal hold: 1",
        ]
    )
    expect(row.get_by_role("link", name=run.file_name)).to_be_visible()
    assert run.file_name.startswith("webinar-leads_csv_full_")
    screenshot("segment-exports")

    page.goto(f"/admin/activation/exportrun/{run.pk}/change/")
    expect(page.locator("table.held-back")).to_contain_text("Global suppression list: Legal hold")
    screenshot("export-run-page")


@pytest.mark.parametrize(
    ("name", "url", "columns"),
    [
        (
            "segments",
            "/admin/segments/segment/",
            ["Name", "Kind", "Category", "Status", "Owner", "Size", "Last refresh"],
        ),
        (
            "activations",
            "/admin/activation/activation/",
            ["Name", "Segment", "Destination", "Mode", "Runs", "Last run"],
        ),
        ("export-runs", "/admin/activation/exportrun/", ["Run", "Status", "Mode", "Members → exported", "Files"]),
    ],
)
def test_admin_lists_fit_1400_pixels(page, admin_user, log_in_as, screenshot, activation, name, url, columns):
    execute_run(start_run(activation).pk)
    page.set_viewport_size(WIDE)
    log_in_as(admin_user)
    page.goto(url)
    for column in columns:
        expect(page.locator("#result_list thead th", has_text=column).first).to_be_visible()
    # the table fits its box: nothing scrolls sideways, no column is cut off
    results = page.locator("#changelist .results")
    assert results.evaluate("e => e.scrollWidth <= e.clientWidth"), "the list scrolls sideways"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    screenshot(f"admin-{name}-1400")
