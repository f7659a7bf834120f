"""The row each destination kind writes for one contact.

A row function returns the cells for one contact or raises normalize.Unusable, in which case the
exporter skips the whole contact (never half a row). Files are UTF-8 CSV without BOM, "\\n" line
ends, minimal quoting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from activation import normalize
from activation.models import Destination, DestinationKind
from contacts.models import Contact

Row = Callable[[Contact, Destination], list[str]]

# LinkedIn's Matched Audiences contact template: column name -> longest value it accepts.
LINKEDIN_LIMITS = {"email": 254, "firstname": 35, "lastname": 35, "jobtitle": 50, "employeecompany": 50, "country": 2}
DIRECT_MAIL_REQUIRED = ("street_address", "postal_code", "city", "country")


@dataclass(frozen=True)
class FileFormat:
    header: list[str]
    fields: tuple[str, ...]  # what the row reads, for .only(); "company__name" pulls the company in
    row: Row


def _google(contact: Contact, destination: Destination) -> list[str]:
    email = normalize.email(contact.email, remove_gmail_dots=destination.remove_gmail_dots)
    return [
        normalize.sha256(email),
        normalize.sha256(normalize.phone_e164(contact.phone, country=contact.country)),
        normalize.sha256(normalize.collapse(contact.first_name)),
        normalize.sha256(normalize.collapse(contact.last_name)),
        contact.country.strip().upper(),
        contact.postal_code.strip(),
    ]


def _meta(contact: Contact, destination: Destination) -> list[str]:
    country = contact.country
    values = [
        normalize.email(contact.email),
        normalize.meta_phone(contact.phone, country=country),
        normalize.letters_only(contact.first_name),
        normalize.letters_only(contact.last_name),
        normalize.letters_only(contact.city),
        normalize.meta_state(contact.region, country=country),
        normalize.meta_zip(contact.postal_code, country=country),
        normalize.meta_country(country),
    ]
    return [normalize.sha256(value) for value in values]


def _linkedin(contact: Contact, destination: Destination) -> list[str]:
    email = normalize.email(contact.email)
    if destination.linkedin_plain_email and len(email) > LINKEDIN_LIMITS["email"]:
        raise normalize.Unusable(f"email {contact.email!r} is longer than LinkedIn's {LINKEDIN_LIMITS['email']}")
    company = contact.company.name if contact.company_id else ""
    return [
        email if destination.linkedin_plain_email else normalize.sha256(email),
        normalize.truncate(contact.first_name, LINKEDIN_LIMITS["firstname"]),
        normalize.truncate(contact.last_name, LINKEDIN_LIMITS["lastname"]),
        normalize.truncate(contact.job_title, LINKEDIN_LIMITS["jobtitle"]),
        normalize.truncate(company, LINKEDIN_LIMITS["employeecompany"]),
        contact.country.strip().upper(),
    ]


def _direct_mail(contact: Contact, destination: Destination) -> list[str]:
    missing = [name for name in DIRECT_MAIL_REQUIRED if not getattr(contact, name).strip()]
    if missing:
        raise normalize.Unusable("incomplete postal address: missing " + ", ".join(missing))
    return [
        contact.first_name.strip(),
        contact.last_name.strip(),
        contact.company.name if contact.company_id else "",
        contact.street_address.strip(),
        contact.postal_code.strip(),
        contact.city.strip(),
        contact.region.strip(),
        contact.country.strip().upper(),
    ]


def _csv_cell(contact: Contact, column: str) -> str:
    if column == "email":
        return normalize.email(contact.email)
    if column == "phone":
        return normalize.phone_e164(contact.phone, country=contact.country)
    if column == "company":
        return contact.company.name if contact.company_id else ""
    if column == "company_domain":
        return contact.company.domain if contact.company_id else ""
    return str(getattr(contact, column))


def _csv_fields(columns: list[str]) -> tuple[str, ...]:
    fields = {"id", "email"}  # the report names skipped contacts by id and email
    for column in columns:
        if column in ("company", "company_domain"):
            fields.update({"company__name", "company__domain"})
        elif column == "phone":
            fields.update({"phone", "country"})
        else:
            fields.add(column)
    return tuple(sorted(fields))


_NAMES = ("id", "email", "first_name", "last_name")

FORMATS: dict[str, FileFormat] = {
    DestinationKind.GOOGLE: FileFormat(
        header=["Email", "Phone", "First Name", "Last Name", "Country", "Zip"],
        fields=(*_NAMES, "phone", "country", "postal_code"),
        row=_google,
    ),
    DestinationKind.META: FileFormat(
        header=["EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY"],
        fields=(*_NAMES, "phone", "city", "region", "postal_code", "country"),
        row=_meta,
    ),
    DestinationKind.LINKEDIN: FileFormat(
        header=list(LINKEDIN_LIMITS),
        fields=(*_NAMES, "job_title", "country", "company__name"),
        row=_linkedin,
    ),
    DestinationKind.DIRECT_MAIL: FileFormat(
        header=["first_name", "last_name", "company", "street_address", "postal_code", "city", "region", "country"],
        fields=(*_NAMES, "street_address", "postal_code", "city", "region", "country", "company__name"),
        row=_direct_mail,
    ),
}


def file_format(destination: Destination) -> FileFormat:
    if destination.kind == DestinationKind.CSV:
        columns = list(destination.csv_columns)
        return FileFormat(
            header=columns,
            fields=_csv_fields(columns),
            row=lambda contact, _destination: [_csv_cell(contact, column) for column in columns],
        )
    return FORMATS[destination.kind]


def webhook_member(contact: Contact) -> dict[str, object]:
    """What a webhook receives for one added member (phone in E.164, or empty)."""
    return {
        "id": contact.pk,
        "email": normalize.email(contact.email),
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "phone": normalize.phone_e164(contact.phone, country=contact.country),
        "job_title": contact.job_title,
        "company": contact.company.name if contact.company_id else "",
        "country": contact.country,
    }


WEBHOOK_FIELDS = (*_NAMES, "phone", "job_title", "country", "company__name")
