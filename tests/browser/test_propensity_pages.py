"""Operations open a propensity model's page (validation, charts, leaks); a Sales rep reads a
contact's likelihood and the factors behind it."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from predictions.models import PropensityModel, PropensityScore
from predictions.scoring import score_model
from predictions.training import queue_version, train_version
from tests.predictions_support import plant_convert

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trained():
    now = timezone.now()
    plant_convert(1000, leak=True, now=now)
    model = PropensityModel.objects.create(name="convert", target="convert", horizon_days=90)
    train_version(queue_version(model), now=now)
    score_model(model, now=now)
    return model


def test_operations_read_the_model_page(page, log_in_as, ops_user, trained, screenshot):
    log_in_as(ops_user)

    page.goto(f"/admin/predictions/propensitymodel/{trained.pk}/report/")

    metrics = trained.active_version.metrics
    expect(page.locator("[data-figure=auc]")).to_contain_text(f"{metrics['auc']:.3f}")
    expect(page.get_by_role("img", name="Lift by decile")).to_be_visible()
    expect(page.get_by_role("img", name="Calibration curve")).to_be_visible()
    expect(page.locator(".pm-flag")).to_contain_text("props.final_contract_value")
    expect(page.get_by_role("link", name="Create segment: top 20% likely to convert")).to_be_visible()
    screenshot("propensity-model-page")


def test_a_sales_rep_reads_a_contacts_likelihood_and_factors(page, log_in_as, sales_user, trained, screenshot):
    score = PropensityScore.objects.filter(model=trained).order_by("-probability").first()
    log_in_as(sales_user)

    page.goto(f"/contacts/{score.contact_id}/")

    card = page.locator("section", has=page.get_by_role("heading", name="Likelihood"))
    expect(card).to_contain_text("Likely to convert: Very high")
    raising = card.get_by_role("list", name="Factors raising the convert score")
    expect(raising.locator("li").first).to_contain_text("(+)")
    expect(card.get_by_role("list", name="Factors lowering the convert score").locator("li").first).to_contain_text(
        "(−)"
    )
    screenshot("propensity-contact-factors", card)


def test_a_sales_rep_reads_a_boosted_leads_own_factors(page, log_in_as, sales_user, screenshot):
    now = timezone.now()
    plant_convert(600, hot_vps=True, now=now)
    model = PropensityModel.objects.create(name="convert", target="convert", horizon_days=90, algorithm="boosting")
    train_version(queue_version(model), now=now)
    score_model(model, now=now)
    vp = PropensityScore.objects.filter(model=model, contact__seniority="vp").order_by("-probability").first()
    log_in_as(sales_user)

    page.goto(f"/contacts/{vp.contact_id}/")

    card = page.locator("section", has=page.get_by_role("heading", name="Likelihood"))
    raising = card.get_by_role("list", name="Factors raising the convert score")
    expect(raising.locator("li").first).to_have_text("seniority: vp (+)")
    expect(card).not_to_contain_text("not available")
    screenshot("propensity-contact-factors-boosting", card)
