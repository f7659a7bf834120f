"""Operations set up an experiment on a campaign, start it, record a send and read its results."""

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from activation.experiment_models import Arm, Experiment, Exposure
from contacts.models import Activity, Contact
from segments.models import Membership
from tests.factories import CampaignFactory, CampaignVariantFactory, SegmentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def build_campaign():
    campaign = CampaignFactory(name="Cloud migration guide", slug="cloud-guide")
    segments = []
    for n, name in enumerate(["Enterprise IT", "Mid-market IT"]):
        segment = SegmentFactory(name=name, slug=name.lower().replace(" ", "-"), kind="static", rule=None)
        CampaignVariantFactory(campaign=campaign, segment=segment, priority=n + 1)
        contacts = Contact.objects.bulk_create(
            Contact(email=f"{segment.slug}{i}@example.com", lifecycle_stage="lead") for i in range(120)
        )
        Membership.objects.bulk_create(Membership(segment=segment, contact=c) for c in contacts)
        segments.append(segment)
    SegmentFactory(name="Competitors", slug="competitors", kind="suppression")
    return campaign, segments


def test_an_experiment_is_set_up_started_sent_and_read(page, live_server, log_in_as, ops_user, screenshot):
    campaign, segments = build_campaign()
    log_in_as(ops_user)

    # set-up: a split that does not add up is refused, naming the field
    page.goto("/admin/activation/experiment/add/")
    page.fill("#id_name", "Guide: segment copy vs generic")
    page.select_option("#id_campaign", label=str(campaign))
    for segment in segments:
        page.select_option("#id_target_segments_from", label=segment.name)
        page.click("#id_target_segments_add")
    page.fill("#id_specific_percent", "50")
    page.fill("#id_generic_percent", "40")
    page.fill("#id_holdout_percent", "0")
    page.fill("#id_baseline_rate", "0.1")
    page.fill("#id_minimum_effect", "0.2")
    page.check("input[name=secondary_metrics][value=revenue]")
    screenshot("experiment-setup")
    page.click("input[name=_save]")
    expect(page.locator(".errorlist").first).to_contain_text("must add up to 100%")
    page.fill("#id_generic_percent", "50")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    experiment = Experiment.objects.get()

    # start it and record a send from the list's actions
    for action in ("start_experiments", "send_now"):
        page.check(f"input[name=_selected_action][value='{experiment.pk}']")
        page.select_option("select[name=action]", action)
        page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("240 contact(s) exposed for the first time")

    # the results page right after the send: provisional, with the planned sample
    page.click(f"a[href='/admin/activation/experiment/{experiment.pk}/results/']")
    expect(page.locator("#decision")).to_contain_text("Provisional")
    expect(page.locator("#plan")).to_contain_text("segment-specific and")
    screenshot("experiment-results-provisional")

    # three weeks on: segment-specific copy got clicks from 40% of its contacts, generic from 10%
    Exposure.objects.update(exposed_at=timezone.now() - timedelta(days=21))
    clicks = []
    for arm, every in ((Arm.SPECIFIC, 5), (Arm.GENERIC, 10)):
        exposed = Exposure.objects.filter(arm=arm).order_by("contact_id").values_list("contact_id", flat=True)
        for i, contact_id in enumerate(exposed):
            if (arm == Arm.SPECIFIC and i % every < 2) or (arm == Arm.GENERIC and i % every == 0):
                when = timezone.now() - timedelta(days=18)
                clicks.append(
                    Activity(contact_id=contact_id, kind="email_click", campaign="cloud-guide", occurred_at=when)
                )
    Activity.objects.bulk_create(clicks)
    page.reload()

    expect(page.locator("#decision")).to_contain_text("Segment-specific content did better than generic")
    expect(page.locator("#lift-chart circle")).to_have_count(3)
    expect(page.locator("#results-click")).to_contain_text("Enterprise IT")
    screenshot("experiment-results-final")
    with page.expect_download() as download:
        page.click("#csv")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    pooled = {r["arm"]: r for r in rows if r["slice"] == "all" and r["metric"] == "click"}
    assert int(pooled["specific"]["exposed"]) + int(pooled["generic"]["exposed"]) == 240
    assert float(pooled["specific"]["lift_vs_generic"]) > 0.2
