"""The scoring model: validation messages naming the field, versions, one active, admin."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from contacts.metrics.compute import compute_metrics
from contacts.models import ContactMetrics, ScoringModel, ScoringModelVersion
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def errors_of(**changes) -> dict[str, list[str]]:
    model = ScoringModel(name="Try", **changes)
    with pytest.raises(ValidationError) as caught:
        model.full_clean()
    return caught.value.message_dict


def test_default_model_is_valid_and_created_active_with_version_one():
    model = ScoringModel.objects.get_active()

    model.full_clean()
    assert (model.is_active, model.half_life_days, model.current_version.number) == (True, 30, 1)
    assert ScoringModel.objects.get_active() == model


@pytest.mark.parametrize("half_life", [0, -5])
def test_a_half_life_not_above_zero_is_refused(half_life):
    assert "Half-life must be a number of days above 0" in errors_of(half_life_days=half_life)["half_life_days"][0]


def test_a_weight_that_is_not_a_number_is_refused_naming_the_kind():
    message = errors_of(weights={"email_open": "lots"})["weights"][0]
    assert message == "The weight of email_open must be a number, not 'lots'."


def test_unknown_kinds_and_negative_weights_are_refused():
    assert "'tweet' is not an activity kind" in errors_of(weights={"tweet": 1})["weights"][0]
    assert "must be 0 or more" in errors_of(weights={"page_view": -1})["weights"][0]
    assert "activity kind" in errors_of(rfv_kinds=["refund"])["rfv_kinds"][0]


def test_overlapping_cut_offs_are_refused():
    errors = errors_of(highly_engaged_top_percent=70, disengaged_bottom_percent=40)
    assert "overlap" in errors["disengaged_bottom_percent"][0]
    assert "between 1 and 99" in errors_of(highly_engaged_top_percent=0)["highly_engaged_top_percent"][0]


def test_email_and_web_thresholds_must_be_ordered():
    assert "must be above" in errors_of(email_highly_threshold=1)["email_highly_threshold"][0]
    assert "must be above" in errors_of(web_active_threshold=1)["web_active_threshold"][0]


def test_only_one_model_can_be_active():
    ScoringModel.objects.get_active()
    with pytest.raises(IntegrityError), transaction.atomic():
        ScoringModel.objects.create(name="Second", is_active=True)


def test_activating_another_model_deactivates_the_first_and_records_a_version(ops_user):
    first = ScoringModel.objects.get_active()
    second = ScoringModel.objects.create(name="Experiment")

    second.activate(user=ops_user)

    first.refresh_from_db()
    assert (first.is_active, ScoringModel.objects.get_active()) == (False, second)
    version = second.current_version
    assert (version.number, version.created_by, version.snapshot["half_life_days"]) == (1, ops_user, 30)


def test_admin_edit_records_a_new_version_with_who_changed_it(client, ops_user):
    model = ScoringModel.objects.get_active()
    client.force_login(ops_user)
    url = reverse("admin:contacts_scoringmodel_change", args=[model.pk])
    form = client.get(url).context["adminform"].form
    data = {name: form.initial.get(name, field.initial) for name, field in form.fields.items()}
    data.update(
        {
            "weights": '{"email_click": 4, "demo_request": 12}',
            "rfv_kinds": '["purchase"]',
            "half_life_days": "45",
            "versions-TOTAL_FORMS": "1",
            "versions-INITIAL_FORMS": "1",
            "versions-MIN_NUM_FORMS": "0",
            "versions-MAX_NUM_FORMS": "1000",
            "versions-0-id": str(model.current_version.pk),
            "versions-0-scoring_model": str(model.pk),
        }
    )

    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    version = ScoringModelVersion.objects.get(scoring_model=model, number=2)
    assert (version.created_by, version.snapshot["half_life_days"]) == (ops_user, 45.0)
    assert version.snapshot["weights"] == {"email_click": 4, "demo_request": 12}

    data.update({"half_life_days": "-1", "weights": '{"email_click": "high"}'})
    response = client.post(url, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["half_life_days"] == ["Half-life must be a number of days above 0, not -1.0."]
    assert errors["weights"] == ["The weight of email_click must be a number, not 'high'."]
    assert model.versions.count() == 2


def test_contact_metrics_are_read_only_in_the_admin(client, ops_user):
    contact = ContactFactory()
    compute_metrics()
    client.force_login(ops_user)

    assert client.get(reverse("admin:contacts_contactmetrics_changelist")).status_code == 200
    assert client.get(reverse("admin:contacts_contactmetrics_add")).status_code == 403
    change = client.get(reverse("admin:contacts_contactmetrics_change", args=[contact.pk]))
    assert change.status_code == 200
    assert b'name="_save"' not in change.content
    assert ContactMetrics.objects.filter(contact=contact).exists()
