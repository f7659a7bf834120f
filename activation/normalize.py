"""Normalising and hashing contact data the way each ad platform documents it.

A value that cannot be normalised raises Unusable; the exporter skips that contact, counts it and
lists it in the run's report. Nothing is ever exported half-normalised. A blank optional value is
not an error: it becomes an empty column.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import phonenumbers

_SPACES = re.compile(r"\s+")
_NOT_LETTER = re.compile(r"[\W\d_]+")  # \W is Unicode-aware: é, ß and ł are word characters
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}

US_STATES = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca", "colorado": "co",
    "connecticut": "ct", "delaware": "de", "district of columbia": "dc", "florida": "fl", "georgia": "ga",
    "hawaii": "hi", "idaho": "id", "illinois": "il", "indiana": "in", "iowa": "ia", "kansas": "ks",
    "kentucky": "ky", "louisiana": "la", "maine": "me", "maryland": "md", "massachusetts": "ma",
    "michigan": "mi", "minnesota": "mn", "mississippi": "ms", "missouri": "mo", "montana": "mt",
    "nebraska": "ne", "nevada": "nv", "new hampshire": "nh", "new jersey": "nj", "new mexico": "nm",
    "new york": "ny", "north carolina": "nc", "north dakota": "nd", "ohio": "oh", "oklahoma": "ok",
    "oregon": "or", "pennsylvania": "pa", "rhode island": "ri", "south carolina": "sc", "south dakota": "sd",
    "tennessee": "tn", "texas": "tx", "utah": "ut", "vermont": "vt", "virginia": "va", "washington": "wa",
    "west virginia": "wv", "wisconsin": "wi", "wyoming": "wy",
}  # fmt: skip


class Unusable(ValueError):
    """The value cannot be normalised; the message names the field and the value."""


def sha256(value: str) -> str:
    """SHA-256 of the UTF-8 bytes as lower-case hex; the empty string stays empty (nothing to match)."""
    return hashlib.sha256(value.encode()).hexdigest() if value else ""


def collapse(value: str) -> str:
    """Trim, lower-case and collapse inner whitespace to one space (Google's rule for text).

    Unicode is composed (NFC) first, so "e" + combining diaeresis hashes like "ë".
    """
    return _SPACES.sub(" ", unicodedata.normalize("NFC", (value or "").strip())).lower()


def email(value: str, *, remove_gmail_dots: bool = False) -> str:
    normalised = (value or "").strip().lower()
    if not _EMAIL.match(normalised):
        raise Unusable(f"email {value!r} is not a valid address")
    if remove_gmail_dots:
        local, domain = normalised.rsplit("@", 1)
        if domain in _GMAIL_DOMAINS:
            normalised = f"{local.replace('.', '')}@{domain}"
    return normalised


def phone_e164(value: str, *, country: str) -> str:
    """E.164 ('+14155550123'), reading national formats with the contact's country; blank stays blank."""
    if not (value or "").strip():
        return ""
    try:
        number = phonenumbers.parse(value, (country or "").upper() or None)
    except phonenumbers.NumberParseException:
        raise Unusable(f"phone {value!r} cannot be read (country {country or 'unknown'!r})") from None
    if not phonenumbers.is_valid_number(number):
        raise Unusable(f"phone {value!r} is not a valid number (country {country or 'unknown'!r})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def letters_only(value: str) -> str:
    """Lower case, letters kept in UTF-8 (é, ß, ł), everything else dropped: Meta's names and cities."""
    return _NOT_LETTER.sub("", unicodedata.normalize("NFC", (value or "").lower()))


def meta_phone(value: str, *, country: str) -> str:
    """Digits only with the country code, no '+' and no leading zeros."""
    return phone_e164(value, country=country).lstrip("+")


def meta_state(region: str, *, country: str) -> str:
    text = letters_only(region)
    if (country or "").upper() == "US":
        return US_STATES.get(collapse(region), text if len(text) == 2 else "")
    return text


def meta_zip(value: str, *, country: str) -> str:
    text = _SPACES.sub("", (value or "").lower())
    if (country or "").upper() == "US":
        text = text.split("-")[0][:5]
    return text


def meta_country(value: str) -> str:
    return (value or "").strip().lower()


def truncate(value: str, limit: int) -> str:
    return (value or "").strip()[:limit]
