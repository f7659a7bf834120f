"""Contacts, companies, activities and property definitions as JSON; checks live on the models."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from api.serializers.strict import StrictInput
from contacts import normalize, writes
from contacts.ingest import MAX_ROWS, aliased, validate_domain
from contacts.models import Activity, Company, Contact, JobTitleRule, PropertyDefinition, normalize_email
from contacts.normalize import merged_originals, normalize_company, normalize_contact


class NormalizedEmailField(serializers.EmailField):
    def to_internal_value(self, data):
        return normalize_email(super().to_internal_value(data))


def _normalized(serializer: serializers.ModelSerializer, attrs: dict, normalize) -> dict:
    """`attrs` with its text normalised (contacts.normalize) and what was sent kept on the record
    where it differs (fields normalised earlier, by their own validators, included)."""
    typed = {name: value for name, value in attrs.items() if isinstance(value, str)}
    result = normalize(typed)
    if result.errors:
        raise serializers.ValidationError(result.errors)
    sent = serializer.initial_data
    originals = {
        name: sent[name]
        for name, value in result.values.items()
        if isinstance(sent.get(name), str) and sent[name] != value
    }
    stored = serializer.instance.original_values if serializer.instance else {}
    return {**attrs, **result.values, "original_values": merged_originals(stored, typed, originals)}


def _field_check(check, value: str, **kwargs) -> str:
    """A normalisation run as a field's own validation, so its error is listed with the other fields'."""
    try:
        return check(value, **kwargs)
    except DjangoValidationError as error:
        raise serializers.ValidationError(error.messages) from None


def _not_an_alias(serializer: serializers.ModelSerializer, model: type[Contact | Company], value: str) -> str:
    """Refuse a key another record answers to since a merge, as a key it holds: a create (or an edit)
    with it would bring the merged-away record back. The upserts match it to that record instead."""
    noun = "contact" if model is Contact else "company"
    found = aliased(model, [value]).get(value)
    if found and (serializer.instance is None or found[0] != serializer.instance.pk):
        pk, own = found
        raise serializers.ValidationError(
            f"{value} has been an alias of {own} ({noun} {pk}) since a merge: update that {noun} "
            f"(or send the row to the bulk upsert, which matches the alias to it), or undo the merge.",
            code="unique",  # taken, as by a record of its own: a 409 conflict
        )
    return value


class DomainField(serializers.CharField):
    def to_internal_value(self, data):
        try:
            return validate_domain(data)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from None


class CountryField(serializers.CharField):
    """An ISO 3166-1 alpha-2 code, alpha-3 code or country name (stored as the alpha-2 code)."""


class WrittenThroughContactsWrites(serializers.ModelSerializer):
    """Creates and updates through contacts.writes, which announces the contacts they change."""

    def create(self, validated_data: dict) -> Contact | Company:
        model: type[Contact] | type[Company] = self.Meta.model
        return writes.save(model(**validated_data))

    def update(self, instance: Contact | Company, validated_data: dict) -> Contact | Company:
        for name, value in validated_data.items():
            setattr(instance, name, value)
        return writes.save(instance)


class CompanySerializer(StrictInput, WrittenThroughContactsWrites):
    domain = DomainField(max_length=253, validators=[UniqueValidator(Company.objects.all())])
    country = CountryField(max_length=100, required=False, allow_blank=True)

    class Meta:
        model = Company
        fields = [
            "id", "name", "domain", "industry", "employee_count", "annual_revenue", "country", "region", "city",
            "technologies", "is_target_account", "is_competitor", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["created_at", "updated_at"]

    def validate_domain(self, value: str) -> str:
        return _not_an_alias(self, Company, value)

    def validate_country(self, value: str) -> str:
        return _field_check(normalize.country, value)

    def validate(self, attrs: dict) -> dict:
        return _normalized(self, super().validate(attrs), normalize_company)


class ContactSerializer(StrictInput, WrittenThroughContactsWrites):
    email = NormalizedEmailField(max_length=254, validators=[UniqueValidator(Contact.objects.all())])
    country = CountryField(max_length=100, required=False, allow_blank=True)
    phone = serializers.CharField(
        max_length=50, required=False, allow_blank=True, help_text="Any format; stored as E.164 (+14155550123)"
    )
    company_domain = serializers.SerializerMethodField(help_text="Domain of the contact's company, if any")

    class Meta:
        model = Contact
        fields = "__all__"
        read_only_fields = ["lifecycle_changed_at", "created_at", "updated_at", "original_values"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_company_domain(self, contact: Contact) -> str | None:
        return contact.company.domain if contact.company else None

    def validate_email(self, value: str) -> str:
        return _not_an_alias(self, Contact, value)

    def validate_country(self, value: str) -> str:
        return _field_check(normalize.country, value)

    def validate_phone(self, value: str) -> str:
        sent = self.initial_data.get("country")
        try:
            region = normalize.country(sent) if isinstance(sent, str) else ""
        except DjangoValidationError:
            region = ""  # validate_country names the country
        if not region and self.instance:
            region = self.instance.country
        return _field_check(normalize.phone, value, region=region)

    def validate(self, attrs: dict) -> dict:
        stored_country = self.instance.country if self.instance else ""
        titles = JobTitleRule.objects.title_map() if "job_title" in attrs else None

        def normalize(typed: dict):
            return normalize_contact(typed, titles=titles, stored_country=stored_country)

        return _normalized(self, super().validate(attrs), normalize)

    def validate_properties(self, value: object) -> dict:
        errors = PropertyDefinition.objects.validate_properties(value)
        if errors or not isinstance(value, dict):
            raise serializers.ValidationError(errors)
        return value


class ActivitySerializer(serializers.ModelSerializer):
    class Meta:
        model = Activity
        fields = ["id", "contact", "kind", "occurred_at", "topic", "product", "url", "campaign", "value",
                  "external_id", "created_at"]  # fmt: skip


class PropertyDefinitionSerializer(StrictInput, serializers.ModelSerializer):
    class Meta:
        model = PropertyDefinition
        fields = ["id", "key", "label", "type", "choices", "layer", "source", "description", "created_at"]
        read_only_fields = ["created_at"]

    def validate_choices(self, choices: object) -> list:
        if not isinstance(choices, list) or not all(isinstance(choice, str) for choice in choices):
            raise serializers.ValidationError('Expected a list of texts, e.g. ["gold", "silver"].')
        return choices

    def validate(self, attrs: dict) -> dict:
        definition = PropertyDefinition(**attrs)
        try:
            definition.clean()
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict) from None
        return attrs


def _rows_field(help_text: str) -> serializers.ListField:
    # Any item: each row is checked on its own and a bad one is listed in `failed`, the others stored.
    return serializers.ListField(child=serializers.JSONField(), max_length=MAX_ROWS, help_text=help_text)


class ContactRowsSerializer(serializers.Serializer):
    rows = _rows_field(
        "Contacts matched by email (normalised; an address merged away matches the contact it was merged into)."
        " Fields as on a contact, plus company_domain (matched or created by domain, aliases as for e-mail) and"
        " company_name; absent fields keep their stored value."
    )


class CompanyRowsSerializer(serializers.Serializer):
    rows = _rows_field(
        "Companies matched by domain (normalised; a domain merged away matches the company it was merged into);"
        " absent fields keep their stored value."
    )


class ActivityRowsSerializer(serializers.Serializer):
    rows = _rows_field(
        "Activities: contact (id) or email, kind, occurred_at (ISO-8601), topic, product, url, campaign, value,"
        " external_id (a repeated external_id is counted as a duplicate and not stored again)."
    )


class RowErrorSerializer(serializers.Serializer):
    path = serializers.CharField()
    message = serializers.CharField()
    code = serializers.CharField()


class FailedRowSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    errors = RowErrorSerializer(many=True)  # type: ignore[assignment]  # a declared field; DRF's metaclass takes it off the class


class RowOutcomeSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.IntegerField()
    key = serializers.CharField(help_text="The email or domain of the record the row was matched to")


class ErasureSerializer(serializers.Serializer):
    erased = serializers.IntegerField(help_text="The id of the contact erased")
    queued_runs = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Export runs queued to send the contact's removal to every destination that received it",
    )
    webhook_notices = serializers.IntegerField(
        help_text="Erasure notices queued to the automation webhooks the contact was sent to (one per webhook)"
    )


class UpsertResultSerializer(serializers.Serializer):
    created = RowOutcomeSerializer(many=True)
    updated = RowOutcomeSerializer(many=True)
    failed = FailedRowSerializer(many=True)


class ActivityIngestResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    failed = FailedRowSerializer(many=True)


class MergeRequestSerializer(StrictInput, serializers.Serializer):
    loser = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, help_text="The id of the contact merged into this one (deleted)"
    )
    choices = serializers.DictField(
        child=serializers.ChoiceField(choices=["survivor", "loser", "both"]),
        required=False,
        help_text='Field (or props.<key>) -> whose value the survivor keeps: "survivor", "loser" ("both" joins '
        "tag lists); fields left out take the defaults (own value where set, the further stage, the higher lead "
        "score). do_not_contact and email_status always keep the more restrictive value.",
    )


class MergeSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The merge, for undo")
    survivor_id = serializers.IntegerField()
    loser_id = serializers.IntegerField()
    loser_email = serializers.EmailField()
    choices = serializers.DictField(child=serializers.CharField(), help_text="Whose value each field kept")
    merged_at = serializers.DateTimeField()
    undone_at = serializers.DateTimeField(allow_null=True)


class CompanyMergeRequestSerializer(StrictInput, serializers.Serializer):
    loser = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, help_text="The id of the company merged into this one (deleted)"
    )
    choices = serializers.DictField(
        child=serializers.ChoiceField(choices=["survivor", "loser", "both"]),
        required=False,
        help_text='Field -> whose value the survivor keeps: "survivor", "loser" ("both" joins technologies); '
        "fields left out take the defaults (own value where set, else the loser's; a flag set on either stays set).",
    )


class CompanyMergeSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The company merge, for undo")
    survivor_id = serializers.IntegerField()
    loser_id = serializers.IntegerField()
    loser_name = serializers.CharField()
    loser_domain = serializers.CharField()
    choices = serializers.DictField(child=serializers.CharField(), help_text="Whose value each field kept")
    merged_at = serializers.DateTimeField()
    undone_at = serializers.DateTimeField(allow_null=True)
