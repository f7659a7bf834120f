from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.utils import timezone

from contacts.models import Company, Contact, LifecycleChange
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory, PropertyDefinitionFactory


def _errors(obj) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as excinfo:
        obj.full_clean()
    return excinfo.value.message_dict


def test_a_malformed_email_is_refused_naming_the_email_field(db):
    errors = _errors(Contact(email="ada.example.com"))

    assert list(errors) == ["email"]


def test_an_unknown_lifecycle_stage_is_refused_naming_the_field(db):
    errors = _errors(Contact(email="ada@example.com", lifecycle_stage="prospectish"))

    assert list(errors) == ["lifecycle_stage"]
    assert "prospectish" in errors["lifecycle_stage"][0]


def test_a_negative_employee_count_is_refused_naming_the_field(db):
    errors = _errors(Company(name="Acme", domain="acme.com", employee_count=-5))

    assert list(errors) == ["employee_count"]


def test_an_undeclared_custom_property_is_refused_naming_the_key(db):
    errors = _errors(Contact(email="ada@example.com", properties={"shoe_size": 41}))

    assert list(errors) == ["properties"]
    assert "props.shoe_size" in errors["properties"][0]
    assert "no PropertyDefinition" in errors["properties"][0]


@pytest.mark.parametrize(
    ("type_", "choices", "value", "expected"),
    [
        ("number", [], "nine", "expected a number"),
        ("number", [], True, "expected a number"),
        ("bool", [], "yes", "expected true or false"),
        ("date", [], "2026-13-01", "is not a date"),
        ("choice", ["email", "phone"], "fax", "is not one of"),
        ("tags", [], "aws", "expected a list of text tags"),
        ("text", [], 12, "expected text"),
    ],
)
def test_a_wrongly_typed_custom_property_is_refused(db, type_, choices, value, expected):
    PropertyDefinitionFactory(key="thing", type=type_, choices=choices)

    errors = _errors(Contact(email="ada@example.com", properties={"thing": value}))

    assert list(errors) == ["properties"]
    assert errors["properties"][0].startswith("props.thing: ")
    assert expected in errors["properties"][0]


def test_declared_properties_of_the_right_type_pass(db):
    PropertyDefinitionFactory(key="nps_score", type="number")
    PropertyDefinitionFactory(key="preferred_channel", type="choice", choices=["email", "phone"])
    PropertyDefinitionFactory(key="beta_tester", type="bool")
    contact = Contact(
        email="ada@example.com", properties={"nps_score": 9, "preferred_channel": "phone", "beta_tester": False}
    )

    contact.full_clean()


def test_emails_collide_after_normalisation_in_full_clean(db):
    ContactFactory(email="ada@example.com")

    errors = _errors(Contact(email="Ada@Example.com "))

    assert list(errors) == ["email"]
    assert "already exists" in errors["email"][0]


def test_the_database_refuses_a_second_contact_with_the_same_normalised_email(db):
    ContactFactory(email="ada@example.com")

    with pytest.raises(IntegrityError):
        Contact.objects.create(email="  ADA@example.COM")


def test_a_saved_email_is_stored_normalised(db):
    contact = Contact.objects.create(email="  Grace.Hopper@Navy.MIL ")

    assert Contact.objects.get(pk=contact.pk).email == "grace.hopper@navy.mil"


def test_company_domains_are_unique_after_normalisation(db):
    CompanyFactory(domain="acme.com")

    errors = _errors(Company(name="Acme again", domain="https://www.ACME.com/about"))
    assert list(errors) == ["domain"]
    with pytest.raises(IntegrityError):
        Company.objects.create(name="Acme again", domain="WWW.Acme.com")


def test_activity_external_ids_are_unique(db):
    ActivityFactory(external_id="esp-123")

    with pytest.raises(IntegrityError):
        ActivityFactory(external_id="esp-123")


def test_activities_without_external_id_do_not_collide(db):
    ActivityFactory(external_id=None)
    ActivityFactory(external_id=None)


def test_creating_a_contact_records_its_first_stage(db):
    contact = ContactFactory(lifecycle_stage="lead")

    change = LifecycleChange.objects.get(contact=contact)
    assert (change.from_stage, change.to_stage) == (None, "lead")
    assert change.changed_at == contact.lifecycle_changed_at


def test_a_stage_change_is_recorded_with_its_time(db):
    contact = ContactFactory(lifecycle_stage="lead")
    before = timezone.now()

    contact.lifecycle_stage = "mql"
    contact.save()

    change = contact.lifecycle_changes.first()
    assert (change.from_stage, change.to_stage) == ("lead", "mql")
    assert change.changed_at >= before
    assert Contact.objects.get(pk=contact.pk).lifecycle_changed_at == change.changed_at


def test_saving_without_a_stage_change_records_nothing(db):
    contact = ContactFactory(lifecycle_stage="lead")
    stamp = contact.lifecycle_changed_at

    contact.lead_score = 40
    contact.save()

    assert contact.lifecycle_changes.count() == 1
    assert Contact.objects.get(pk=contact.pk).lifecycle_changed_at == stamp


def test_a_contact_reloaded_from_the_database_remembers_its_stage(db):
    contact = Contact.objects.get(pk=ContactFactory(lifecycle_stage="sql").pk)

    contact.lifecycle_stage = "opportunity"
    contact.save()

    assert list(contact.lifecycle_changes.values_list("from_stage", "to_stage")) == [
        ("sql", "opportunity"),
        (None, "sql"),
    ]


def test_becoming_a_customer_sets_customer_since(db):
    contact = ContactFactory(lifecycle_stage="opportunity")

    contact.lifecycle_stage = "customer"
    contact.save()

    assert Contact.objects.get(pk=contact.pk).customer_since == timezone.localdate()


def test_customer_since_is_kept_when_it_is_already_known(db):
    earlier = timezone.localdate() - timedelta(days=400)
    contact = ContactFactory(lifecycle_stage="opportunity", customer_since=earlier)

    contact.lifecycle_stage = "customer"
    contact.save()

    assert Contact.objects.get(pk=contact.pk).customer_since == earlier


def test_contacts_loaded_without_their_stage_cost_no_query_each(db, django_assert_num_queries):
    ContactFactory.create_batch(5)
    with django_assert_num_queries(1):
        emails = [contact.email for contact in Contact.objects.only("pk", "email")]
    assert len(emails) == 5


def test_a_contact_loaded_without_its_stage_still_records_a_stage_change(db):
    contact = ContactFactory(lifecycle_stage="lead")
    partial = Contact.objects.only("pk", "email").get(pk=contact.pk)
    partial.save()
    assert list(LifecycleChange.objects.filter(contact=contact).values_list("from_stage", "to_stage")) == [
        (None, "lead")
    ]
    partial = Contact.objects.only("pk", "email").get(pk=contact.pk)
    partial.lifecycle_stage = "mql"
    partial.save()
    assert LifecycleChange.objects.filter(contact=contact).latest("id").from_stage == "lead"
