import json

import pytest
from django.urls import reverse

from contacts.models import Company, Contact, LifecycleChange
from tests.admin_forms import change_form_data
from tests.factories import ContactFactory, PropertyDefinitionFactory


@pytest.fixture
def ops_client(client, ops_user):
    client.force_login(ops_user)
    return client


def _add(client, model: str, **changes):
    url = reverse(f"admin:contacts_{model}_add")
    data = change_form_data(client.get(url))
    data.update(changes)
    return client.post(url, data)


def _field_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, "the form should come back with errors"
    return {name: list(errors) for name, errors in response.context["adminform"].form.errors.items()}


def test_a_good_contact_is_added(ops_client):
    PropertyDefinitionFactory(key="nps_score", type="number")

    response = _add(ops_client, "contact", email="Ada@Example.com ", properties=json.dumps({"nps_score": 9}))

    assert response.status_code == 302
    contact = Contact.objects.get()
    assert contact.email == "ada@example.com"
    assert contact.properties == {"nps_score": 9}
    assert LifecycleChange.objects.filter(contact=contact).count() == 1


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"email": "ada.example.com"}, "email", "valid email"),
        ({"lifecycle_stage": "prospectish"}, "lifecycle_stage", "prospectish is not one of the available choices"),
        ({"properties": json.dumps({"shoe_size": 41})}, "properties", "props.shoe_size: no PropertyDefinition"),
        ({"properties": json.dumps({"nps_score": "nine"})}, "properties", "props.nps_score: expected a number"),
        ({"properties": "{not json"}, "properties", "Enter a valid JSON"),
        ({"phone": "0044 20 1234"}, "phone", "E.164"),
        ({"interests": json.dumps("aws")}, "interests", "list of text tags"),
    ],
)
def test_a_bad_contact_comes_back_with_the_error_on_the_field_and_nothing_written(ops_client, changes, field, message):
    PropertyDefinitionFactory(key="nps_score", type="number")

    errors = _field_errors(_add(ops_client, "contact", **{"email": "ada@example.com", **changes}))

    assert list(errors) == [field]
    assert message in errors[field][0]
    assert not Contact.objects.exists()
    assert not LifecycleChange.objects.exists()


def test_an_email_that_collides_after_normalisation_is_refused_in_the_admin(ops_client):
    ContactFactory(email="ada@example.com")

    errors = _field_errors(_add(ops_client, "contact", email="ADA@example.com"))

    assert list(errors) == ["email"]
    assert "already exists" in errors["email"][0]
    assert Contact.objects.count() == 1


def test_a_negative_employee_count_comes_back_with_the_error_on_the_field(ops_client):
    errors = _field_errors(_add(ops_client, "company", name="Acme", domain="acme.com", employee_count="-5"))

    assert list(errors) == ["employee_count"]
    assert not Company.objects.exists()


def test_editing_a_contact_into_an_undeclared_property_changes_nothing(ops_client):
    contact = ContactFactory(properties={})
    url = reverse("admin:contacts_contact_change", args=[contact.pk])
    data = change_form_data(ops_client.get(url))
    data["properties"] = json.dumps({"favourite_colour": "teal"})

    errors = _field_errors(ops_client.post(url, data))

    assert list(errors) == ["properties"]
    contact.refresh_from_db()
    assert contact.properties == {}
