"""Normalising what people type into contact and company records: one code path for the bulk API,
the import, the admin, the REST API and the `normalize_contacts` job.

Each function takes the raw value and returns the stored form, or raises ValidationError saying
what is wrong and what is allowed. `normalize_contact` / `normalize_company` apply them to a row of
field values and return the originals of what changed, which the record keeps in
`original_values` (nothing a person typed is thrown away).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from urllib.parse import urlsplit

import phonenumbers
import pycountry
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from rapidfuzz.distance import DamerauLevenshtein

_SPACES = re.compile(r"\s+")
_WORDS = re.compile(r"[^\w+#]+")
_email_validator = EmailValidator()

# Mailbox providers people mistype most; a domain one or two edits away from one of these (and not
# itself one of them) gets a suggestion. The address is stored as typed: it may be right.
COMMON_EMAIL_DOMAINS = (
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "hotmail.com", "hotmail.co.uk",
    "hotmail.fr", "outlook.com", "live.com", "msn.com", "icloud.com", "me.com", "aol.com", "gmx.de", "gmx.net",
    "web.de", "t-online.de", "orange.fr", "free.fr", "protonmail.com", "proton.me", "comcast.net", "yandex.ru",
    "mail.ru", "qq.com", "163.com",
)  # fmt: skip
_TLD_TYPOS = {".con": ".com", ".cmo": ".com", ".ocm": ".com", ".vom": ".com", ".comm": ".com", ".cm": ".com",
              ".nte": ".net", ".ent": ".net", ".ogr": ".org"}  # fmt: skip

# Country names people write that are neither ISO names nor codes (keys compared folded: lower
# case, no accents, no dots).
COUNTRY_ALIASES = {
    "usa": "US", "us of a": "US", "america": "US", "united states of america": "US", "u s": "US",
    "uk": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB", "wales": "GB",
    "northern ireland": "GB", "deutschland": "DE", "allemagne": "DE", "alemania": "DE", "germania": "DE",
    "frankreich": "FR", "espana": "ES", "spanien": "ES", "italia": "IT", "italien": "IT", "osterreich": "AT",
    "schweiz": "CH", "suisse": "CH", "svizzera": "CH", "nederland": "NL", "holland": "NL",
    "the netherlands": "NL", "belgique": "BE", "belgie": "BE", "polska": "PL", "sverige": "SE", "norge": "NO",
    "danmark": "DK", "suomi": "FI", "russia": "RU", "turkey": "TR", "turkiye": "TR", "south korea": "KR",
    "korea": "KR", "north korea": "KP", "czechia": "CZ", "brasil": "BR", "mexique": "MX", "uae": "AE",
    "emirates": "AE", "nippon": "JP", "nihon": "JP", "prc": "CN", "people's republic of china": "CN",
    "hong kong sar": "HK", "taiwan": "TW", "vietnam": "VN", "ivory coast": "CI", "cote d'ivoire": "CI",
    "eire": "IE", "hellas": "GR", "ellada": "GR",
}  # fmt: skip

# Distinct values remembered by the pure look-ups below (country texts, e-mail hosts): a file of a
# million rows holds few of them, and each look-up costs tens of microseconds.
LOOKUP_CACHE_SIZE = 65_536
# Distinct job titles a TitleMap remembers (each a scan of every keyword rule).
TITLE_CACHE_SIZE = 65_536
# Distinct names and short texts remembered: first names, cities and titles repeat across a file's
# rows, street addresses rarely; fewer, since they are many.
TEXT_CACHE_SIZE = 8_192


def normalize_email(value: str) -> str:
    """Trim and lower-case; the domain in its ASCII (IDNA) form when it has one, so that an address
    typed with 'müller.de' and one with 'xn--mller-kva.de' are the same key."""
    text = (value or "").strip().lower()
    local, at, host = text.rpartition("@")
    if at and host and not host.isascii():
        try:
            return f"{local}@{host.encode('idna').decode('ascii')}"
        except UnicodeError:
            return text
    return text


def _fold(value: str) -> str:
    """Lower case, accents removed, dots and inner whitespace collapsed: 'U.S.A. ' -> 'usa'."""
    text = unicodedata.normalize("NFKD", value.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c)).replace(".", "")
    return _SPACES.sub(" ", text).strip()


@cache
def _country_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for country in pycountry.countries:
        for name in ("alpha_2", "alpha_3", "name", "common_name", "official_name"):
            if value := getattr(country, name, None):
                index.setdefault(_fold(value), country.alpha_2)
    for alias, code in COUNTRY_ALIASES.items():
        index[_fold(alias)] = code
    return index


def country(value: str) -> str:
    """ISO 3166-1 alpha-2 from a code (DE, DEU), an ISO name or a common alias (USA, UK, Deutschland)."""
    if not (value or "").strip():
        return ""
    code = _country_code(value)
    if code is None:
        raise ValidationError(
            f"{value!r} is not a country we know: give an ISO 3166-1 code (DE, DEU) or an English name (Germany).",
            code="invalid_country",
        )
    return code


@lru_cache(maxsize=LOOKUP_CACHE_SIZE)
def _country_code(value: str) -> str | None:
    return _country_index().get(_fold(value))


def email(value: str) -> str:
    """Trim, lower-case, the domain in its ASCII (IDNA) form; raise ValidationError on bad syntax."""
    text = unicodedata.normalize("NFC", (value or "").strip()).lower()
    local, at, host = text.rpartition("@")
    if not at or not local or not host:
        raise ValidationError(f"{value!r} is not an e-mail address (name@example.com).", code="invalid_email")
    try:
        host.encode("idna")
    except UnicodeError:
        message = f"{value!r}: the domain {host!r} is not a valid domain name."
        raise ValidationError(message, code="invalid_email") from None
    normalised = normalize_email(text)
    try:
        _email_validator(normalised)
    except ValidationError:
        raise ValidationError(
            f"{value!r} is not a valid e-mail address (name@example.com, the name in ASCII letters).",
            code="invalid_email",
        ) from None
    if len(normalised) > 254:
        raise ValidationError(f"{value!r} is longer than 254 characters.", code="invalid_email")
    return normalised


def email_suggestion(value: str) -> str | None:
    """The address with a commonly mistyped domain corrected ('ada@gmial.com' -> 'ada@gmail.com'), or None."""
    local, _, host = (value or "").strip().lower().rpartition("@")
    if not local or not host:
        return None
    fixed = _suggested_host(host)
    return f"{local}@{fixed}" if fixed else None


@lru_cache(maxsize=LOOKUP_CACHE_SIZE)
def _suggested_host(host: str) -> str | None:
    if host in COMMON_EMAIL_DOMAINS:
        return None
    for wrong, right in _TLD_TYPOS.items():
        if host.endswith(wrong):
            return host.removesuffix(wrong) + right
    best = min(COMMON_EMAIL_DOMAINS, key=lambda known: DamerauLevenshtein.distance(host, known))
    distance = DamerauLevenshtein.distance(host, best)
    # One edit away, or two for longer names; different top-level domains are different domains.
    if 0 < distance <= (2 if len(best) >= 9 else 1) and host.rsplit(".", 1)[-1] == best.rsplit(".", 1)[-1]:
        return best
    return None


def phone(value: str, *, region: str = "") -> str:
    """E.164 ('+14155550123'); a national number is read in the contact's country (`region`)."""
    text = (value or "").strip()
    if not text:
        return ""
    try:
        number = phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException:
        where = f"country {region}" if region else "no country given"
        raise ValidationError(
            f"{value!r} cannot be read as a phone number ({where}); "
            "write it in E.164 form with its country code, e.g. +49 30 1234567.",
            code="invalid_phone",
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(f"{value!r} is not a valid phone number.", code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def domain(value: str) -> str:
    """The host of a website URL or domain, lower case, IDNA, without 'www.': 'https://www.Acme.com/x' -> 'acme.com'."""
    return _domain(value or "")


@lru_cache(maxsize=LOOKUP_CACHE_SIZE)
def _domain(value: str) -> str:
    text = value.strip().lower()
    if not text:
        return ""
    if "@" in text and "/" not in text:
        text = text.rpartition("@")[2]
    host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    host = host.rstrip(".").removeprefix("www.")
    try:
        return host.encode("idna").decode("ascii") if host else ""
    except UnicodeError:
        raise ValidationError(f"{value!r} is not a domain name (e.g. acme.com).", code="invalid_domain") from None


def _capitalise(word: str) -> str:
    # Each part of a hyphenated or apostrophised name: jean-luc -> Jean-Luc, o'brien -> O'Brien.
    return re.sub(r"[^\W\d_]+", lambda m: m.group(0)[:1].upper() + m.group(0)[1:].lower(), word)


@lru_cache(maxsize=TEXT_CACHE_SIZE)
def person_name(value: str) -> str:
    """Whitespace collapsed; a name typed all in lower or all in upper case gets its capitals.

    Mixed case is kept as typed (McDonald, van Dijk); scripts without case (漢字) are left alone.
    """
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", value or "")).strip()
    if text and (text == text.lower() or text == text.upper()) and text != text.swapcase():
        return " ".join(_capitalise(word) for word in text.split(" "))
    return text


@lru_cache(maxsize=TEXT_CACHE_SIZE)
def text(value: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFC", value or "")).strip()


@dataclass(frozen=True)
class TitleRule:
    keyword: str
    job_function: str
    seniority: str


class TitleMap:
    """Job title -> (job function, seniority) through keyword rules (`JobTitleRule` rows).

    The longest keyword found as whole words wins, separately for function and seniority, so
    'VP Marketing' reads seniority from 'vp' and function from 'marketing'.
    """

    def __init__(self, rules: Iterable[TitleRule]) -> None:
        self.rules = sorted(rules, key=lambda r: (-len(r.keyword), r.keyword))
        self._known: dict[str, tuple[str, str]] = {}  # title -> answer: titles repeat, rules are many

    def classify(self, title: str) -> tuple[str, str]:
        answer = self._known.get(title)
        if answer is None:
            if len(self._known) >= TITLE_CACHE_SIZE:
                self._known.clear()
            answer = self._known[title] = self._classify(title)
        return answer

    def _classify(self, title: str) -> tuple[str, str]:
        padded = f" {_WORDS.sub(' ', _fold(title))} "
        function = seniority = ""
        for rule in self.rules:
            wanted = (not function and rule.job_function) or (not seniority and rule.seniority)
            if wanted and f" {rule.keyword} " in padded:
                function = function or rule.job_function
                seniority = seniority or rule.seniority
        return function, seniority


@dataclass
class Normalized:
    values: dict
    originals: dict = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    suggestions: dict[str, str] = field(default_factory=dict)


CONTACT_NAME_FIELDS = ("first_name", "last_name")
CONTACT_TEXT_FIELDS = ("job_title", "region", "city", "postal_code", "street_address")


def _apply(result: Normalized, name: str, normalise, *args, **kwargs) -> None:
    raw = result.values[name]
    if not isinstance(raw, str):
        return  # the field's own validation names the wrong type
    try:
        value = normalise(raw, *args, **kwargs)
    except ValidationError as error:
        result.errors[name] = error.messages
        return
    result.values[name] = value
    if value != raw:
        result.originals[name] = raw


def normalize_contact(values: dict, *, titles: TitleMap | None = None, stored_country: str = "") -> Normalized:
    """Normalise the fields present in `values` (a contact row); see the module docstring.

    The phone's default region is the row's country, else `stored_country` (the contact's).
    With `titles`, a job title given without a job function / seniority fills them in.
    """
    result = Normalized(dict(values))
    present = result.values.keys()
    if "email" in present:
        _apply(result, "email", email)
        if "email" not in result.errors and (suggestion := email_suggestion(result.values["email"])):
            result.suggestions["email"] = f"Did you mean {suggestion}?"
    if "country" in present:
        _apply(result, "country", country)
    for name in CONTACT_NAME_FIELDS:
        if name in present:
            _apply(result, name, person_name)
    for name in CONTACT_TEXT_FIELDS:
        if name in present:
            _apply(result, name, text)
    if "phone" in present:
        region = result.values.get("country") if "country" not in result.errors else ""
        _apply(result, "phone", phone, region=region or stored_country)
    title = result.values.get("job_title")
    if titles is not None and isinstance(title, str) and title:
        function, seniority = titles.classify(title)
        if function and not result.values.get("job_function"):
            result.values["job_function"] = function
        if seniority and not result.values.get("seniority"):
            result.values["seniority"] = seniority
    return result


def normalize_company(values: dict) -> Normalized:
    """Normalise a company row: domain (also from a website URL), country, name whitespace."""
    result = Normalized(dict(values))
    if "domain" in result.values:
        _apply(result, "domain", domain)
    if "country" in result.values:
        _apply(result, "country", country)
    for name in ("name", "industry", "region", "city"):
        if name in result.values:
            _apply(result, name, text)
    return result


def merged_originals(stored: dict | None, written: Iterable[str], new: dict) -> dict:
    """The record's originals after a write: a field written again drops its old original."""
    kept = {k: v for k, v in (stored or {}).items() if k not in set(written)}
    return kept | new
