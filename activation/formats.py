"""The row each destination kind writes for one contact.

A row function returns the cells for one contact or raises normalize.Unusable, in which case the
exporter skips the whole contact (never half a row). Files are UTF-8 CSV without BOM, "\\n" line
ends, minimal quoting.

Files people open in a spreadsheet (CSV and direct-mail lists) have formula cells neutralised
(see `neutralise`). Platform upload files (Google, Meta, LinkedIn) are written as each platform's
spec says and are not: Google's and Meta's identifiers are SHA-256 hex digests (which never start
with a formula character) beside Google's ISO country and zip, and LinkedIn matches on its
template's values as given, where a quote mark would become part of the name or e-mail matched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from activation import normalize
from activation.models import Destination, DestinationKind
from contacts.models import Contact

Row = Callable[[Contact, Destination], list[str]]

# LinkedIn's Matched Audiences contact template: column name -> longest value it accepts. The header
# must be the template's exactly ("changing or removing template headers will cause an error when you
# upload"), googleaid (a Google advertising id, which we do not hold) included and left empty.
LINKEDIN_LIMITS = {"email": 254, "firstname": 35, "lastname": 35, "jobtitle": 50, "employeecompany": 50, "country": 2}
LINKEDIN_HEADER = [*LINKEDIN_LIMITS, "googleaid"]
DIRECT_MAIL_REQUIRED = ("street_address", "postal_code", "city", "country")


@dataclass(frozen=True)
class FileFormat:
    header: list[str]
    fields: tuple[str, ...]  # what the row reads, for .only(); "company__name" pulls the company in
    row: Row
    # The columns of a sent row that its removal row keeps (the others are left empty); None keeps all.
    removal_columns: frozenset[str] | None = None

    def removal(self, cells: list[str]) -> list[str]:
        """The removal row for a contact the destination received as `cells`: what the destination
        matches a removal on, kept with the export snapshot until the removal is sent."""
        if self.removal_columns is None:
            return list(cells)
        return [cell if name in self.removal_columns else "" for name, cell in zip(self.header, cells, strict=True)]


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
    company = contact.company.name if contact.company else ""
    return [
        email if destination.linkedin_plain_email else normalize.sha256(email),
        normalize.truncate(contact.first_name, LINKEDIN_LIMITS["firstname"]),
        normalize.truncate(contact.last_name, LINKEDIN_LIMITS["lastname"]),
        normalize.truncate(contact.job_title, LINKEDIN_LIMITS["jobtitle"]),
        normalize.truncate(company, LINKEDIN_LIMITS["employeecompany"]),
        contact.country.strip().upper(),
        "",  # googleaid
    ]


def _direct_mail(contact: Contact, destination: Destination) -> list[str]:
    missing = [name for name in DIRECT_MAIL_REQUIRED if not getattr(contact, name).strip()]
    if missing:
        raise normalize.Unusable("incomplete postal address: missing " + ", ".join(missing))
    return [
        contact.first_name.strip(),
        contact.last_name.strip(),
        contact.company.name if contact.company else "",
        contact.street_address.strip(),
        contact.postal_code.strip(),
        contact.city.strip(),
        contact.region.strip(),
        contact.country.strip().upper(),
    ]


# OWASP's advice on CSV injection: a spreadsheet runs a cell starting with one of these as a formula
# (=HYPERLINK(...) exfiltrates, +cmd|... runs a program through DDE).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


def neutralise(cell: str) -> str:
    """The cell as text a spreadsheet will show rather than run: a leading quote before a formula
    character. Plain numbers (-5, an E.164 phone +14155550123) run nothing and are left alone."""
    if cell.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def for_spreadsheets(row: Row) -> Row:
    """`row`, its cells neutralised: for files that people open in a spreadsheet."""

    def neutralised_row(contact: Contact, destination: Destination) -> list[str]:
        return [neutralise(cell) for cell in row(contact, destination)]

    return neutralised_row


def _csv_cell(contact: Contact, column: str) -> str:
    if column == "email":
        return normalize.email(contact.email)
    if column == "phone":
        return normalize.phone_e164(contact.phone, country=contact.country)
    if column == "company":
        return contact.company.name if contact.company else ""
    if column == "company_domain":
        return contact.company.domain if contact.company else ""
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
# A CSV file's columns that identify a person; a removal row keeps these (all columns when none is chosen).
CSV_IDENTIFIERS = frozenset({"id", "email", "phone"})

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
        header=LINKEDIN_HEADER,
        fields=(*_NAMES, "job_title", "country", "company__name"),
        row=_linkedin,
        # LinkedIn matches an uploaded contact on its email first; every row we send has one.
        removal_columns=frozenset({"email", "country"}),
    ),
    DestinationKind.DIRECT_MAIL: FileFormat(
        header=["first_name", "last_name", "company", "street_address", "postal_code", "city", "region", "country"],
        fields=(*_NAMES, "street_address", "postal_code", "city", "region", "country", "company__name"),
        row=for_spreadsheets(_direct_mail),
    ),
}


def file_format(destination: Destination) -> FileFormat:
    if destination.kind == DestinationKind.CSV:
        columns = list(destination.csv_columns)
        return FileFormat(
            header=columns,
            fields=_csv_fields(columns),
            row=for_spreadsheets(lambda contact, _destination: [_csv_cell(contact, column) for column in columns]),
            removal_columns=(CSV_IDENTIFIERS & set(columns)) or None,
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
        "company": contact.company.name if contact.company else "",
        "country": contact.country,
    }


WEBHOOK_FIELDS = (*_NAMES, "phone", "job_title", "country", "company__name")
