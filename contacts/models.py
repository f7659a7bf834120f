"""The CRM data segments are made from: companies, contacts, their activity stream and deals."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from contacts.normalize import TitleMap, TitleRule, normalize_email

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")
PROPERTY_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def normalize_domain(value: str) -> str:
    value = (value or "").strip().lower()
    value = re.sub(r"^https?://", "", value)
    return value.split("/")[0].removeprefix("www.")


def validate_e164(value: str) -> None:
    if value and not E164.match(value):
        raise ValidationError(
            "Enter the phone number in E.164 form: '+', country code and number, digits only (e.g. +14155550123).",
            code="invalid_phone",
        )


def validate_country(value: str) -> None:
    if value and not COUNTRY_CODE.match(value):
        raise ValidationError(
            f"{value!r} is not an ISO 3166-1 alpha-2 country code (two capital letters, e.g. DE).",
            code="invalid_country",
        )


# Dates no CRM record has: a typo (0026 for 2026) or a sentinel (9999-12-31) would sort first or
# last for ever and overflow date arithmetic (now - occurred_at) in metrics and rules.
FIRST_YEAR, LAST_YEAR = 1900, 2100


def year_problem(value: date | datetime) -> str | None:
    """Why `value` is not a date a CRM record can have, or None."""
    if FIRST_YEAR <= value.year <= LAST_YEAR:
        return None
    return f"{value.isoformat()} is out of range: dates must fall between {FIRST_YEAR} and {LAST_YEAR}."


def validate_plausible_year(value: date | datetime | None) -> None:
    if value is not None and (problem := year_problem(value)):
        raise ValidationError(problem, code="implausible_year")


def validate_tag_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ValidationError('Enter a list of text tags, e.g. ["aws", "kubernetes"].', code="invalid_tags")


class Layer(models.TextChoices):
    """The criterion layers segments are built from; every field and property belongs to one."""

    FIRMOGRAPHIC = "firmographic", "Firmographic"
    DEMOGRAPHIC = "demographic", "Demographic"
    GEOGRAPHIC = "geographic", "Geographic"
    TECHNOGRAPHIC = "technographic", "Technographic"
    PSYCHOGRAPHIC = "psychographic", "Psychographic"
    BEHAVIORAL = "behavioral", "Behavioural"
    LIFECYCLE = "lifecycle", "Lifecycle"
    VALUE = "value", "Value"


class Company(models.Model):
    name = models.CharField(max_length=200)
    domain = models.CharField(max_length=253, unique=True, help_text="Lower-case host name, e.g. acme.com")
    industry = models.CharField(max_length=100, blank=True)
    employee_count = models.PositiveIntegerField(null=True, blank=True)
    annual_revenue = models.DecimalField(
        max_digits=16, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    country = models.CharField(max_length=2, blank=True, validators=[validate_country])
    region = models.CharField(max_length=100, blank=True)
    city = models.CharField(max_length=100, blank=True)
    technologies = models.JSONField(default=list, blank=True, validators=[validate_tag_list])
    original_values = models.JSONField(
        default=dict, blank=True, help_text="What was typed where normalisation changed it, by field"
    )
    enriched_at = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="Values an enrichment import filled, by field (props.<key> for a property): when. "
        "A value not listed was captured (typed or imported).",
    )
    is_target_account = models.BooleanField(default=False)
    is_competitor = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "companies"
        ordering = ["name"]
        indexes = [
            models.Index(fields=["industry"], name="company_industry_idx"),
            models.Index(fields=["employee_count"], name="company_employees_idx"),
            models.Index(fields=["country"], name="company_country_idx"),
            models.Index(Lower("name"), name="company_lower_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.domain})"

    def save(self, *args, **kwargs) -> None:
        self.domain = normalize_domain(self.domain)
        super().save(*args, **kwargs)

    def clean_fields(self, exclude=None) -> None:
        # Normalise before the field validators and the uniqueness check see the values.
        self.domain = normalize_domain(self.domain)
        self.country = (self.country or "").upper()
        super().clean_fields(exclude)


class LifecycleStage(models.TextChoices):
    SUBSCRIBER = "subscriber", "Subscriber"
    LEAD = "lead", "Lead"
    MQL = "mql", "Marketing qualified lead"
    SQL = "sql", "Sales qualified lead"
    OPPORTUNITY = "opportunity", "Opportunity"
    CUSTOMER = "customer", "Customer"
    EVANGELIST = "evangelist", "Evangelist"
    OTHER = "other", "Other"


class EmailStatus(models.TextChoices):
    VALID = "valid", "Valid"
    BOUNCED = "bounced", "Bounced"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


class Reachability(models.TextChoices):
    """Whether mail to a contact can arrive and be wanted (contacts/hygiene.py keeps it): the first
    problem found, in this order."""

    REACHABLE = "reachable", "Reachable"
    INVALID = "invalid_syntax", "Invalid address"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    BOUNCED = "bounced", "Bounced (hard)"
    SOFT_BOUNCED = "bounced_soft", "Bounced (soft, repeatedly)"
    DISPOSABLE = "disposable_domain", "Disposable domain"
    DOMAIN_TYPO = "domain_typo", "Mistyped domain"
    ROLE = "role_address", "Role address (info@, sales@ ...)"
    INACTIVE = "inactive", "Inactive (no engagement)"


class JobFunction(models.TextChoices):
    ENGINEERING = "engineering", "Engineering"
    IT = "it", "IT"
    SECURITY = "security", "Security"
    OPERATIONS = "operations", "Operations"
    FINANCE = "finance", "Finance"
    MARKETING = "marketing", "Marketing"
    SALES = "sales", "Sales"
    PRODUCT = "product", "Product"
    HR = "hr", "Human resources"
    EXECUTIVE = "executive", "Executive"
    OTHER = "other", "Other"


class Seniority(models.TextChoices):
    ENTRY = "entry", "Entry"
    SENIOR = "senior", "Senior"
    MANAGER = "manager", "Manager"
    DIRECTOR = "director", "Director"
    VP = "vp", "Vice president"
    CXO = "cxo", "C-level"
    OWNER = "owner", "Owner"


class Gender(models.TextChoices):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    NONBINARY = "nonbinary", "Non-binary"
    UNDISCLOSED = "undisclosed", "Prefer not to say"


class IncomeBand(models.TextChoices):
    UNDER_50K = "under_50k", "Under 50k"
    FROM_50K = "50k_100k", "50k–100k"
    FROM_100K = "100k_200k", "100k–200k"
    OVER_200K = "over_200k", "Over 200k"


class Education(models.TextChoices):
    SECONDARY = "secondary", "Secondary"
    BACHELOR = "bachelor", "Bachelor"
    MASTER = "master", "Master"
    DOCTORATE = "doctorate", "Doctorate"
    OTHER = "other", "Other"


class MaritalStatus(models.TextChoices):
    SINGLE = "single", "Single"
    MARRIED = "married", "Married"
    PARTNERED = "partnered", "Partnered"
    OTHER = "other", "Other"


# Contacts a channel may address: valid e-mail and not flagged do-not-contact.
ADDRESSABLE = models.Q(email_status=EmailStatus.VALID, do_not_contact=False)


class ContactQuerySet(models.QuerySet["Contact", "Contact"]):
    def reachable(self) -> ContactQuerySet:
        """Contacts a channel may address: valid e-mail and not flagged do-not-contact."""
        return self.filter(ADDRESSABLE)

    def customers(self) -> ContactQuerySet:
        return self.filter(lifecycle_stage=LifecycleStage.CUSTOMER)


_STAGE_NOT_READ = object()  # Contact._loaded_stage of a contact loaded without its stage


class Contact(models.Model):
    email = models.EmailField(max_length=254, unique=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    phone = models.CharField(
        max_length=16, blank=True, validators=[validate_e164], help_text="E.164, e.g. +14155550123"
    )
    job_title = models.CharField(max_length=200, blank=True)
    job_function = models.CharField(max_length=20, choices=JobFunction.choices, blank=True)
    seniority = models.CharField(max_length=20, choices=Seniority.choices, blank=True)

    country = models.CharField(max_length=2, blank=True, validators=[validate_country])
    region = models.CharField(max_length=100, blank=True, help_text="State or region")
    city = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    street_address = models.CharField(max_length=200, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    language = models.CharField(max_length=16, blank=True)

    birth_year = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1900), MaxValueValidator(2100)]
    )
    gender = models.CharField(max_length=20, choices=Gender.choices, blank=True)
    income_band = models.CharField(max_length=20, choices=IncomeBand.choices, blank=True)
    education = models.CharField(max_length=20, choices=Education.choices, blank=True)
    marital_status = models.CharField(max_length=20, choices=MaritalStatus.choices, blank=True)

    interests = models.JSONField(default=list, blank=True, validators=[validate_tag_list])
    values = models.JSONField(default=list, blank=True, validators=[validate_tag_list])
    technologies = models.JSONField(default=list, blank=True, validators=[validate_tag_list])

    # No index of their own: contact_company_idx and contact_owner_stage_idx (owner first) serve
    # them, and each index on this table is written by every imported row.
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts", db_index=False
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_contacts",
        db_index=False,
    )

    lifecycle_stage = models.CharField(max_length=20, choices=LifecycleStage.choices, default=LifecycleStage.LEAD)
    lifecycle_changed_at = models.DateTimeField(default=timezone.now)
    lead_score = models.IntegerField(default=0)
    estimated_deal_size = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    lifetime_value = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    customer_since = models.DateField(null=True, blank=True, validators=[validate_plausible_year])
    renewal_date = models.DateField(null=True, blank=True, validators=[validate_plausible_year])
    product_adoption = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(100)], help_text="Share of licensed features in use, 0–100"
    )
    email_status = models.CharField(max_length=20, choices=EmailStatus.choices, default=EmailStatus.VALID)
    do_not_contact = models.BooleanField(default=False)
    reachability = models.CharField(
        max_length=20,
        choices=Reachability.choices,
        default=Reachability.REACHABLE,
        editable=False,
        help_text="Kept by the list hygiene check (contacts/hygiene.py)",
    )
    properties = models.JSONField(
        default=dict, blank=True, help_text="Custom properties declared by PropertyDefinitions"
    )
    original_values = models.JSONField(
        default=dict, blank=True, help_text="What was typed where normalisation changed it, by field"
    )
    enriched_at = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="Values an enrichment import filled, by field (props.<key> for a property): when. "
        "A value not listed was captured (typed or imported).",
    )

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ContactQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["lifecycle_stage"], name="contact_stage_idx"),
            models.Index(fields=["company"], name="contact_company_idx"),
            models.Index(fields=["owner", "lifecycle_stage"], name="contact_owner_stage_idx"),
            models.Index(fields=["lead_score"], name="contact_lead_score_idx"),
            models.Index(fields=["country"], name="contact_country_idx"),
            models.Index(fields=["renewal_date"], name="contact_renewal_idx"),
            # The "unreachable" suppression and the hygiene report read the few that are not reachable.
            models.Index(
                fields=["reachability"], name="contact_unreachable_idx", condition=~models.Q(reachability="reachable")
            ),
            # Contact search lists by name: walking this index in order serves the first page of
            # a broad search without sorting every match, and its leading column a last-name prefix.
            models.Index(Lower("last_name"), Lower("first_name"), "id", name="contact_name_order_idx"),
            # ... and a first-name prefix ("ada" finds Ada Lovelace).
            models.Index(Lower("first_name"), name="contact_lower_first_name_idx"),
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A stage the query left out (.only(), .defer()) is looked up by save() if it comes to
        # that: reading it here would cost a query for every contact such a query returns.
        self._loaded_stage = self.__dict__.get("lifecycle_stage", _STAGE_NOT_READ) if self.pk else None

    def __str__(self) -> str:
        name = self.full_name
        return f"{name} <{self.email}>" if name else self.email

    def save(self, *args, **kwargs) -> None:
        """Save, recording a LifecycleChange when the stage differs from the stored one."""
        self.email = normalize_email(self.email)
        created = self.pk is None
        if self._loaded_stage is _STAGE_NOT_READ:
            self._loaded_stage = Contact.objects.filter(pk=self.pk).values_list("lifecycle_stage", flat=True).first()
        changed = not created and self._loaded_stage != self.lifecycle_stage
        if changed:
            self.lifecycle_changed_at = timezone.now()
        super().save(*args, **kwargs)
        if created or changed:
            LifecycleChange.objects.create(
                contact=self,
                from_stage=None if created else self._loaded_stage,
                to_stage=self.lifecycle_stage,
                changed_at=self.lifecycle_changed_at,
            )
            if self.lifecycle_stage == LifecycleStage.CUSTOMER and self.customer_since is None:
                self.customer_since = timezone.localdate(self.lifecycle_changed_at)
                super().save(update_fields=["customer_since"])
        self._loaded_stage = self.lifecycle_stage

    def clean_fields(self, exclude=None) -> None:
        # Normalise before the field validators and the uniqueness check see the values, so
        # "Ada@Example.com " is valid and collides with an existing "ada@example.com".
        self.email = normalize_email(self.email)
        self.country = (self.country or "").upper()
        super().clean_fields(exclude)

    def clean(self) -> None:
        property_errors = PropertyDefinition.objects.validate_properties(self.properties)
        if property_errors:
            raise ValidationError({"properties": property_errors})

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class JobTitleRuleQuerySet(models.QuerySet["JobTitleRule", "JobTitleRule"]):
    def title_map(self) -> TitleMap:
        return TitleMap(TitleRule(*row) for row in self.values_list("keyword", "job_function", "seniority"))


class JobTitleRule(models.Model):
    """One keyword of the job title -> function / seniority mapping (contacts.normalize.TitleMap).

    Migration 0012 loads sensible defaults; operations edit them in the admin.
    """

    keyword = models.CharField(
        max_length=100, unique=True, help_text="Whole words of a title, lower case without accents, e.g. 'head of'"
    )
    job_function = models.CharField(max_length=20, choices=JobFunction.choices, blank=True)
    seniority = models.CharField(max_length=20, choices=Seniority.choices, blank=True)

    objects = JobTitleRuleQuerySet.as_manager()

    class Meta:
        ordering = ["keyword"]

    def __str__(self) -> str:
        return self.keyword

    def clean(self) -> None:
        self.keyword = " ".join(self.keyword.lower().split())
        if not self.job_function and not self.seniority:
            raise ValidationError("A rule sets a job function, a seniority or both.")


class LifecycleChange(models.Model):
    """Stage history: answers "became MQL on" and "customer since"."""

    # No index of its own: lifecycle_contact_stage_idx leads with it.
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="lifecycle_changes", db_index=False)
    from_stage = models.CharField(max_length=20, choices=LifecycleStage.choices, null=True, blank=True)
    to_stage = models.CharField(max_length=20, choices=LifecycleStage.choices)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["contact", "to_stage", "changed_at"], name="lifecycle_contact_stage_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.from_stage or '—'} → {self.to_stage} on {self.changed_at:%Y-%m-%d}"


class PropertyType(models.TextChoices):
    TEXT = "text", "Text"
    NUMBER = "number", "Number"
    BOOL = "bool", "Yes/no"
    DATE = "date", "Date"
    CHOICE = "choice", "Choice"
    TAGS = "tags", "Tags"


class PropertySource(models.TextChoices):
    CAPTURED = "captured", "Captured"
    ENRICHED = "enriched", "Enriched"
    DERIVED = "derived", "Derived"


class PropertyDefinitionQuerySet(models.QuerySet["PropertyDefinition", "PropertyDefinition"]):
    def validate_properties(self, properties: object) -> list[str]:
        """Check a Contact.properties dict against the declared definitions; return error messages."""
        if not isinstance(properties, dict):
            return ["Custom properties must be an object of key: value."]
        if not properties:
            return []
        definitions = {d.key: d for d in self.filter(key__in=list(properties))}
        errors = []
        for key, value in properties.items():
            definition = definitions.get(key)
            if definition is None:
                errors.append(f"props.{key}: no PropertyDefinition declares {key!r}; declare it before writing it.")
                continue
            message = definition.check_value(value)
            if message:
                errors.append(f"props.{key}: {message}")
        return errors


class PropertyDefinition(models.Model):
    """Registry of custom contact properties; declaring one makes `props.<key>` usable in rules."""

    key = models.CharField(
        max_length=63,
        unique=True,
        help_text="Lower-case letters, digits and underscores, starting with a letter",
    )
    label = models.CharField(max_length=200)
    type = models.CharField(max_length=10, choices=PropertyType.choices)
    choices = models.JSONField(default=list, blank=True, help_text="Allowed values for a choice property")
    layer = models.CharField(max_length=20, choices=Layer.choices)
    source = models.CharField(max_length=10, choices=PropertySource.choices, default=PropertySource.CAPTURED)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = PropertyDefinitionQuerySet.as_manager()

    class Meta:
        ordering = ["layer", "key"]

    def __str__(self) -> str:
        return f"{self.label} (props.{self.key}, {self.type})"

    def clean(self) -> None:
        if not PROPERTY_KEY.match(self.key or ""):
            raise ValidationError(
                {"key": "Use lower-case letters, digits and underscores, starting with a letter (max 63)."}
            )
        if self.type == PropertyType.CHOICE:
            if (
                not isinstance(self.choices, list)
                or not self.choices
                or not all(isinstance(c, str) and c for c in self.choices)
            ):
                raise ValidationError({"choices": "A choice property needs a non-empty list of text choices."})
        elif self.choices:
            raise ValidationError({"choices": f"Only choice properties take choices, not {self.type}."})

    def check_value(self, value: object) -> str | None:
        """Return why `value` does not fit this property's type, or None when it does."""
        if value is None:
            return None
        if self.type == PropertyType.TEXT and not isinstance(value, str):
            return f"expected text, got {type(value).__name__}."
        if self.type == PropertyType.NUMBER and (
            isinstance(value, bool) or not isinstance(value, int | float | Decimal)
        ):
            return f"expected a number, got {type(value).__name__}."
        if self.type == PropertyType.BOOL and not isinstance(value, bool):
            return f"expected true or false, got {type(value).__name__}."
        if self.type == PropertyType.DATE:
            if not isinstance(value, str):
                return f"expected a date as YYYY-MM-DD, got {type(value).__name__}."
            try:
                parsed = date.fromisoformat(value)
            except ValueError:
                return f"{value!r} is not a date (use YYYY-MM-DD)."
            if len(value) != 10:
                return f"{value!r} is not a date (use YYYY-MM-DD)."
            if problem := year_problem(parsed):
                return problem
        if self.type == PropertyType.CHOICE and value not in self.choices:
            return f"{value!r} is not one of {', '.join(map(repr, self.choices))}."
        if self.type == PropertyType.TAGS and (
            not isinstance(value, list) or not all(isinstance(tag, str) for tag in value)
        ):
            return "expected a list of text tags."
        return None


class ActivityKind(models.TextChoices):
    EMAIL_OPEN = "email_open", "Email open"
    EMAIL_CLICK = "email_click", "Email click"
    SITE_VISIT = "site_visit", "Site visit"
    PAGE_VIEW = "page_view", "Page view"
    CONTENT_DOWNLOAD = "content_download", "Content download"
    FORM_SUBMIT = "form_submit", "Form submission"
    WEBINAR_ATTEND = "webinar_attend", "Webinar attended"
    PRICING_VIEW = "pricing_view", "Pricing page view"
    FEATURE_COMPARISON = "feature_comparison", "Feature comparison view"
    DEMO_REQUEST = "demo_request", "Demo request"
    PURCHASE = "purchase", "Purchase"
    SUPPORT_TICKET_OPENED = "support_ticket_opened", "Support ticket opened"
    SUPPORT_TICKET_CLOSED = "support_ticket_closed", "Support ticket closed"
    SALES_TOUCH = "sales_touch", "Sales touch"
    # Delivery reports of the mail service (contacts/hygiene.py reads them), not engagement.
    EMAIL_BOUNCE_HARD = "email_bounce_hard", "Email hard bounce"
    EMAIL_BOUNCE_SOFT = "email_bounce_soft", "Email soft bounce"


class Activity(models.Model):
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="activities")
    kind = models.CharField(max_length=32, choices=ActivityKind.choices)
    occurred_at = models.DateTimeField(validators=[validate_plausible_year])
    topic = models.CharField(max_length=100, blank=True)
    product = models.CharField(max_length=100, blank=True)
    url = models.URLField(max_length=500, blank=True)
    campaign = models.CharField(max_length=100, blank=True)
    value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    external_id = models.CharField(
        max_length=200, unique=True, null=True, blank=True, help_text="Source system id; a repeated delivery is a no-op"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name_plural = "activities"
        ordering = ["-occurred_at", "-id"]
        indexes = [
            # Event conditions: EXISTS / COUNT per (contact, kind) inside a time window.
            models.Index(fields=["contact", "kind", "occurred_at"], name="activity_contact_kind_time_idx"),
            # Activity timeline on the contact page, newest first.
            models.Index(fields=["contact", "-occurred_at"], name="activity_contact_time_idx"),
            # Window scans by kind across all contacts (metrics, rule counts and sums by kind),
            # covering the contact and value so that they need no heap page: a year of purchases
            # lies on ~50,000 pages of the stream, and on ~1,800 of this index.
            models.Index(
                fields=["kind", "occurred_at"], include=["contact", "value"], name="activity_kind_time_cover_idx"
            ),
        ]
        # A BRIN index on occurred_at for whole-table window scans is added on PostgreSQL
        # only, in migration 0002 (SQLite has no BRIN).

    def __str__(self) -> str:
        return f"{self.get_kind_display()} by contact {self.contact_id} at {self.occurred_at:%Y-%m-%d %H:%M}"


class ActivityTally(models.Model):
    """How many activities of one kind a contact has, over all time.

    Written only by database triggers on Activity (migration 0009), so that every write path
    counts: the ORM, bulk_create, COPY ingest, raw SQL, cascades. Event conditions counting a
    contact's activities of one kind over all time read it instead of grouping the activity
    stream (segments.rules.compiler), and count from Activity only the contacts that have an
    activity of that kind dated after the refresh's `now`.
    """

    pk = models.CompositePrimaryKey("contact", "kind")
    # Its rows go when their last activity does (the delete trigger), before the contact itself.
    contact = models.ForeignKey(Contact, on_delete=models.DO_NOTHING, related_name="+", db_index=False)
    kind = models.CharField(max_length=32, choices=ActivityKind.choices)
    n = models.PositiveIntegerField()

    class Meta:
        verbose_name_plural = "activity tallies"
        # count_gte / count_eq over all time: the contacts of a kind with at least / exactly n.
        indexes = [models.Index(fields=["kind", "n"], name="tally_kind_n_idx")]

    def __str__(self) -> str:
        return f"{self.n} × {self.kind} by contact {self.contact_id}"


class DealStage(models.TextChoices):
    OPEN = "open", "Open"
    WON = "won", "Won"
    LOST = "lost", "Lost"


class Deal(models.Model):
    name = models.CharField(max_length=200)
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="deals")
    company = models.ForeignKey(Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="deals")
    amount = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(0)])
    stage = models.CharField(max_length=10, choices=DealStage.choices, default=DealStage.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    external_id = models.CharField(
        max_length=200, unique=True, null=True, blank=True, help_text="Source system id; an import matches by it"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["contact", "stage"], name="deal_contact_stage_idx"),
            models.Index(fields=["company", "stage"], name="deal_company_stage_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(closed_at__isnull=True) | ~models.Q(stage=DealStage.OPEN),
                name="deal_open_has_no_close_date",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_stage_display()}, {self.amount})"

    def clean(self) -> None:
        if self.contact_id is None and self.company_id is None:
            raise ValidationError("A deal belongs to a contact, a company or both.")
        if self.stage == DealStage.OPEN and self.closed_at:
            raise ValidationError({"closed_at": "An open deal has no close date."})


def parse_iso_datetime(value: str) -> datetime:
    """Parse an ISO-8601 datetime; naive values are taken in the project's time zone."""
    parsed = datetime.fromisoformat(value)
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


# --- Scoring model and derived behavioural measures (computed by contacts/metrics/) ---------------

DEFAULT_WEIGHTS = {
    ActivityKind.EMAIL_OPEN: 1,
    ActivityKind.EMAIL_CLICK: 3,
    ActivityKind.SITE_VISIT: 2,
    ActivityKind.PAGE_VIEW: 1,
    ActivityKind.CONTENT_DOWNLOAD: 5,
    ActivityKind.FORM_SUBMIT: 8,
    ActivityKind.WEBINAR_ATTEND: 8,
    ActivityKind.PRICING_VIEW: 6,
    ActivityKind.FEATURE_COMPARISON: 5,
    ActivityKind.DEMO_REQUEST: 10,
    ActivityKind.PURCHASE: 10,
    ActivityKind.SUPPORT_TICKET_OPENED: 0,
    ActivityKind.SUPPORT_TICKET_CLOSED: 0,
    ActivityKind.SALES_TOUCH: 2,
}


def default_weights() -> dict[str, float]:
    return {str(kind): weight for kind, weight in DEFAULT_WEIGHTS.items()}


def default_rfv_kinds() -> list[str]:
    return [str(ActivityKind.PURCHASE)]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


class ScoringModelQuerySet(models.QuerySet["ScoringModel", "ScoringModel"]):
    def get_active(self) -> ScoringModel:
        """The active scoring model; a default one (version 1) is created on first use."""
        active: ScoringModel | None = self.filter(is_active=True).first()
        if active is None:
            active = ScoringModel(name="Default", is_active=True)
            active.save_version(user=None)
        return active


class ScoringModel(models.Model):
    """How engagement, levels, RFV and velocity are measured. Exactly one is active at a time.

    Every saved change is kept as a ScoringModelVersion (who, when, full settings) and each
    metrics run records the version it used. Formulas are documented in contacts/metrics/.
    """

    name = models.CharField(max_length=100)
    is_active = models.BooleanField(default=False, help_text="The model compute_metrics uses (only one at a time)")
    weights = models.JSONField(
        default=default_weights, help_text='Points per activity kind, e.g. {"email_click": 3, "demo_request": 10}'
    )
    half_life_days = models.FloatField(
        default=30, help_text="An activity this many days old counts half; one two half-lives old a quarter"
    )
    highly_engaged_top_percent = models.PositiveSmallIntegerField(
        default=20, help_text="Top share of contacts (by engagement score) that is highly engaged"
    )
    disengaged_bottom_percent = models.PositiveSmallIntegerField(
        default=40, help_text="Bottom share of contacts that is disengaged; the rest between is moderately engaged"
    )
    email_window_days = models.PositiveSmallIntegerField(default=90)
    email_highly_threshold = models.PositiveSmallIntegerField(
        default=5, help_text="Email points (open 1, click 2) within the email window for highly engaged"
    )
    email_moderately_threshold = models.PositiveSmallIntegerField(
        default=1, help_text="Email points within the email window for moderately engaged"
    )
    web_window_days = models.PositiveSmallIntegerField(default=30)
    web_active_threshold = models.PositiveSmallIntegerField(
        default=8, help_text="Site visits + page views within the web window for 'active'"
    )
    web_engaged_threshold = models.PositiveSmallIntegerField(
        default=1, help_text="Site visits + page views within the web window for 'engaged'"
    )
    rfv_kinds = models.JSONField(
        default=default_rfv_kinds, help_text="Activity kinds counted for recency and frequency"
    )
    rfv_frequency_window_days = models.PositiveIntegerField(
        default=365, help_text="Frequency counts activities this many days back; 0 means all time"
    )
    velocity_min_ratio = models.FloatField(
        default=2.0, help_text="Accelerating: last 30 days at least this many times the 30 days before"
    )
    velocity_min_recent = models.PositiveSmallIntegerField(
        default=4, help_text="Accelerating also needs at least this many activities in the last 30 days"
    )
    strong_intent_days = models.PositiveSmallIntegerField(
        default=14, help_text="A pricing view of a product this recent is strong intent"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScoringModelQuerySet.as_manager()

    class Meta:
        ordering = ["-is_active", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="scoring_model_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (active)" if self.is_active else self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.half_life_days is None or not _is_number(self.half_life_days) or self.half_life_days <= 0:
            errors["half_life_days"] = f"Half-life must be a number of days above 0, not {self.half_life_days!r}."
        weights_error = self._weights_error()
        if weights_error:
            errors["weights"] = weights_error
        top, bottom = self.highly_engaged_top_percent, self.disengaged_bottom_percent
        if top is not None and not 0 < top < 100:
            errors["highly_engaged_top_percent"] = f"Enter a share between 1 and 99 percent, not {top}."
        elif bottom is not None and not 0 < bottom < 100:
            errors["disengaged_bottom_percent"] = f"Enter a share between 1 and 99 percent, not {bottom}."
        elif top is not None and bottom is not None and top + bottom > 100:
            errors["disengaged_bottom_percent"] = (
                f"Top {top}% (highly engaged) and bottom {bottom}% (disengaged) overlap; together they may be "
                "at most 100%."
            )
        if self.email_moderately_threshold is not None and self.email_moderately_threshold < 1:
            errors["email_moderately_threshold"] = "The moderately-engaged email threshold must be at least 1."
        elif (self.email_highly_threshold or 0) <= (self.email_moderately_threshold or 0):
            errors["email_highly_threshold"] = (
                f"The highly-engaged email threshold ({self.email_highly_threshold}) must be above the "
                f"moderately-engaged one ({self.email_moderately_threshold})."
            )
        if self.web_engaged_threshold is not None and self.web_engaged_threshold < 1:
            errors["web_engaged_threshold"] = "The 'engaged' web threshold must be at least 1."
        elif (self.web_active_threshold or 0) <= (self.web_engaged_threshold or 0):
            errors["web_active_threshold"] = (
                f"The 'active' web threshold ({self.web_active_threshold}) must be above the 'engaged' one "
                f"({self.web_engaged_threshold})."
            )
        for name in ("email_window_days", "web_window_days", "strong_intent_days"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                errors[name] = "Enter a window of at least 1 day."
        kinds_error = self._rfv_kinds_error()
        if kinds_error:
            errors["rfv_kinds"] = kinds_error
        if self.velocity_min_ratio is not None and (
            not _is_number(self.velocity_min_ratio) or self.velocity_min_ratio <= 0
        ):
            errors["velocity_min_ratio"] = f"Enter a velocity ratio above 0, not {self.velocity_min_ratio!r}."
        if errors:
            raise ValidationError(errors)

    def _weights_error(self) -> str | None:
        if not isinstance(self.weights, dict):
            return 'Enter an object of activity kind: points, e.g. {"email_click": 3}.'
        for kind, weight in self.weights.items():
            if kind not in ActivityKind.values:
                return f"{kind!r} is not an activity kind (allowed: {', '.join(ActivityKind.values)})."
            if not _is_number(weight):
                return f"The weight of {kind} must be a number, not {weight!r}."
            if weight < 0:
                return f"The weight of {kind} must be 0 or more, not {weight}."
        return None

    def _rfv_kinds_error(self) -> str | None:
        if not isinstance(self.rfv_kinds, list) or not self.rfv_kinds:
            return 'Enter a non-empty list of activity kinds, e.g. ["purchase"].'
        unknown = [kind for kind in self.rfv_kinds if kind not in ActivityKind.values]
        if unknown:
            return f"{', '.join(map(repr, unknown))} is not an activity kind."
        return None

    def weight_of(self, kind: str) -> float:
        return float(self.weights.get(kind, 0))

    def settings_snapshot(self) -> dict:
        return {
            field.name: getattr(self, field.name)
            for field in self._meta.concrete_fields
            if field.name not in ("id", "created_at", "updated_at", "is_active")
        }

    def save_version(self, *, user=None) -> ScoringModelVersion:
        """Save the model and record its settings as a new version (who changed it, when)."""
        with transaction.atomic():
            self.save()
            number = (self.versions.aggregate(top=models.Max("number"))["top"] or 0) + 1
            return ScoringModelVersion.objects.create(
                scoring_model=self, number=number, snapshot=self.settings_snapshot(), created_by=user
            )

    def activate(self, *, user=None) -> None:
        """Make this the one active model (the previous one is deactivated in the same transaction)."""
        with transaction.atomic():
            ScoringModel.objects.filter(is_active=True).exclude(pk=self.pk).update(is_active=False)
            self.is_active = True
            self.save_version(user=user)

    @property
    def current_version(self) -> ScoringModelVersion | None:
        return self.versions.order_by("-number").first()


class ScoringModelVersion(models.Model):
    """One saved state of a scoring model: the audit trail of weight and threshold changes."""

    scoring_model = models.ForeignKey(ScoringModel, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    snapshot = models.JSONField(help_text="Every setting of the model as saved")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["scoring_model", "number"], name="scoring_version_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.scoring_model.name} v{self.number}"


class EngagementLevel(models.TextChoices):
    HIGHLY = "highly_engaged", "Highly engaged"
    MODERATELY = "moderately_engaged", "Moderately engaged"
    DISENGAGED = "disengaged", "Disengaged"


class WebActivityLevel(models.TextChoices):
    ACTIVE = "active", "Active"
    ENGAGED = "engaged", "Engaged"
    DORMANT = "dormant", "Dormant"


class RfvCell(models.TextChoices):
    """Named cells of the recency / frequency / value grid (ranges in contacts/metrics/sql.py)."""

    CHAMPIONS = "champions", "Champions"
    LOYAL = "loyal", "Loyal"
    NEW = "new", "New"
    PROMISING = "promising", "Promising"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"
    AT_RISK = "at_risk", "At risk"
    HIBERNATING = "hibernating", "Hibernating"


class ContactMetrics(models.Model):
    """Behavioural, value and lifecycle measures of one contact as of `as_of` (derived, never edited)."""

    contact = models.OneToOneField(Contact, primary_key=True, on_delete=models.CASCADE, related_name="metrics")
    as_of = models.DateTimeField()

    activity_count = models.PositiveIntegerField(default=0)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    engagement_score = models.FloatField(default=0)
    engagement_percentile = models.FloatField(default=0)
    engagement_level = models.CharField(max_length=20, choices=EngagementLevel.choices)
    past_engagement_score = models.FloatField(default=0, help_text="Engagement score as of 60 days before as_of")
    active_60_to_90_days_ago = models.BooleanField(default=False, help_text="Any activity 60–90 days before as_of")
    email_engagement_level = models.CharField(max_length=20, choices=EngagementLevel.choices)
    web_activity_level = models.CharField(max_length=20, choices=WebActivityLevel.choices)

    topics = models.JSONField(default=list, help_text="Top topics, strongest first")
    top_topics = models.JSONField(default=list, help_text='[{"topic": ..., "share": percent}, ...] strongest first')
    topic_shares = models.JSONField(default=dict, help_text="topic -> share of recency-weighted reading, percent")
    top_topic = models.CharField(max_length=100, blank=True)
    top_topic_share = models.FloatField(null=True, blank=True)

    products = models.JSONField(default=list, help_text="Products of interest, strongest intent first")
    product_interest = models.JSONField(default=list, help_text='[{"product": ..., "intent": ..., "strong": bool}]')
    top_product = models.CharField(max_length=100, blank=True)
    top_product_intent = models.FloatField(null=True, blank=True)
    strong_intent = models.BooleanField(default=False)
    strong_intent_products = models.JSONField(default=list)

    recency_days = models.PositiveIntegerField(null=True, blank=True)
    frequency = models.PositiveIntegerField(default=0)
    monetary = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    r_score = models.PositiveSmallIntegerField(null=True, blank=True)
    f_score = models.PositiveSmallIntegerField(null=True, blank=True)
    v_score = models.PositiveSmallIntegerField(null=True, blank=True)
    rfv_cell = models.CharField(max_length=20, choices=RfvCell.choices, blank=True)

    recent_activity_count = models.PositiveIntegerField(default=0)
    previous_activity_count = models.PositiveIntegerField(default=0)
    velocity_ratio = models.FloatField(null=True, blank=True)
    is_accelerating = models.BooleanField(default=False)
    recently_disengaged = models.BooleanField(default=False)

    tenure_days = models.IntegerField(null=True, blank=True)
    days_in_stage = models.IntegerField(null=True, blank=True)
    days_to_renewal = models.IntegerField(null=True, blank=True)
    open_tickets = models.PositiveIntegerField(default=0)
    expansion_readiness = models.FloatField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "contact metrics"
        # Deliberately few indexes: compute_metrics rewrites every row nightly, and each index
        # adds to that. Rules on metrics filter a narrow table in one pass; `top_percent` on the
        # engagement score is the one that walks an ordered index.
        indexes = [models.Index(fields=["engagement_score"], name="metrics_score_idx")]

    def __str__(self) -> str:
        return f"metrics of contact {self.contact_id} as of {self.as_of:%Y-%m-%d %H:%M}"


class MetricsRun(models.Model):
    """One compute_metrics run: what it covered and what it skipped, for the admin and the command."""

    as_of = models.DateTimeField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    full = models.BooleanField(default=True, help_text="All contacts (nightly) or only touched contacts")
    contacts = models.PositiveIntegerField(default=0)
    activities_counted = models.PositiveIntegerField(default=0)
    future_activities_ignored = models.PositiveIntegerField(
        default=0, help_text="Activities dated after as_of: not counted"
    )
    scoring_version = models.ForeignKey(ScoringModelVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    last_activity_id = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The highest activity id when the run began: activities above it were written after it "
        "(predictions.stored_measures reads it)",
    )

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        scope = "all contacts" if self.full else f"{self.contacts} contacts"
        return f"metrics as of {self.as_of:%Y-%m-%d %H:%M} ({scope})"


# --- Imports from files (contacts/imports.py) -----------------------------------------------------


class ImportKind(models.TextChoices):
    CONTACTS = "contacts", "Contacts (matched by e-mail)"
    COMPANIES = "companies", "Companies (matched by domain)"
    ACTIVITIES = "activities", "Activities (matched by external id)"
    DEALS = "deals", "Deals (matched by external id)"
    # Enrichment fills stored records and never creates one (contacts/enrichment.py).
    ENRICH_CONTACTS = "enrich_contacts", "Contact enrichment (matched by e-mail)"
    ENRICH_COMPANIES = "enrich_companies", "Company enrichment (matched by domain)"


ENRICHMENT_KINDS = frozenset({ImportKind.ENRICH_CONTACTS, ImportKind.ENRICH_COMPANIES})


class ImportMapping(models.Model):
    """A saved column mapping ({file column: target field}), offered again for files like it."""

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=ImportKind.choices)
    columns = models.JSONField(default=dict, help_text='{"E-mail address": "email", "Notes": ""} ("" ignores it)')
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="import_mapping_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class ImportStatus(models.TextChoices):
    MAPPING = "mapping", "Waiting for its mapping"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ImportJob(models.Model):
    """One uploaded file and its run: who, when, the file's checksum, the mapping used, the counts."""

    kind = models.CharField(max_length=20, choices=ImportKind.choices)
    file_name = models.CharField(max_length=255)
    stored_path = models.CharField(max_length=500, help_text="The uploaded file under IMPORT_DIR")
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the file")
    size = models.PositiveBigIntegerField()
    file_format = models.CharField(max_length=10)  # csv or xlsx
    encoding = models.CharField(max_length=20, blank=True)
    delimiter = models.CharField(max_length=1, blank=True)
    headers = models.JSONField(default=list)
    mapping = models.JSONField(default=dict, help_text="{file column: target field}; empty target: ignored")
    status = models.CharField(max_length=20, choices=ImportStatus.choices, default=ImportStatus.MAPPING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True, help_text="Last progress update")
    rows_done = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0, help_text="Share of the file read, 0-1")
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    overwrite_captured = models.BooleanField(
        default=False, help_text="Enrichment only: replace captured values too (else only empty and enriched ones)"
    )
    kept = models.PositiveIntegerField(
        default=0, help_text="Enrichment: cells not written because the record holds a captured value"
    )
    message = models.TextField(blank=True)
    segment_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text='The static segment "Imported <name> <date>" of its contacts'
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_kind_display()}, {self.created_at:%Y-%m-%d %H:%M})"

    @property
    def is_finished(self) -> bool:
        return self.status in (ImportStatus.DONE, ImportStatus.CANCELLED, ImportStatus.FAILED)

    @property
    def is_enrichment(self) -> bool:
        return self.kind in ENRICHMENT_KINDS

    @property
    def segment_name(self) -> str:
        return f"{'Enriched' if self.is_enrichment else 'Imported'} {self.file_name} {self.created_at:%Y-%m-%d}"


# --- Duplicates and merges (contacts/duplicates.py, contacts/merging.py) ---------------------------


class DuplicateStatus(models.TextChoices):
    PENDING = "pending", "Waiting for review"
    DISMISSED = "dismissed", "Not a duplicate"


class DuplicateCandidate(models.Model):
    """Two contacts that may be one person, with the evidence and a match score (0-1).

    The pair is stored lower id first. A merge deletes the merged-away contact and with it its
    candidate rows (the merge's snapshot brings them back on undo); a dismissed pair stays
    dismissed when the search finds it again.
    """

    contact_a = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    contact_b = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(help_text="0-1: how sure the match is")
    evidence = models.JSONField(default=list, help_text="Why the pair was found, in words")
    status = models.CharField(max_length=10, choices=DuplicateStatus.choices, default=DuplicateStatus.PENDING)
    found_at = models.DateTimeField(default=timezone.now)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-score", "id"]
        constraints = [
            models.UniqueConstraint(fields=["contact_a", "contact_b"], name="duplicate_pair_unique"),
            models.CheckConstraint(
                condition=models.Q(contact_a__lt=models.F("contact_b")), name="duplicate_pair_order"
            ),
        ]
        # The review queue: pending pairs, best first. contact_b's own index serves the cascade.
        indexes = [
            models.Index(fields=["status", "-score"], name="duplicate_queue_idx"),
            models.Index(fields=["contact_b"], name="duplicate_contact_b_idx"),
        ]

    def __str__(self) -> str:
        return f"contacts {self.contact_a_id} and {self.contact_b_id} ({self.score:.2f})"


class ContactMerge(models.Model):
    """One merge of a contact into another, with everything needed to undo it exactly.

    Ids are plain integers, not keys: the merged-away contact is gone while the merge stands, and a
    later merge may take the survivor away too (undo that one first).
    """

    survivor_id = models.BigIntegerField()
    loser_id = models.BigIntegerField(help_text="The contact merged away (deleted; restored by undo)")
    loser_email = models.EmailField(max_length=254)
    choices = models.JSONField(default=dict, help_text="Field -> 'survivor' or 'loser': whose value was kept")
    snapshot = models.JSONField(default=dict, help_text="The rows as they were before the merge, for undo")
    participants = models.JSONField(default=dict, help_text="What each app did (segments: memberships), for undo")
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    merged_at = models.DateTimeField(default=timezone.now)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-merged_at", "-id"]
        indexes = [
            models.Index(fields=["survivor_id"], name="merge_survivor_idx"),
            models.Index(fields=["loser_id"], name="merge_loser_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.loser_email} (contact {self.loser_id}) into contact {self.survivor_id}"

    @property
    def is_undone(self) -> bool:
        return self.undone_at is not None


class ContactAlias(models.Model):
    """An e-mail address a contact answers to since a merge: the merged-away contact's (or the
    survivor's own, when the merge kept the other). Every upsert that matches contacts by e-mail
    reads it as this contact's, so a re-import of the old address updates the survivor instead of
    creating the merged-away contact again; undoing the merge removes it."""

    email = models.EmailField(max_length=254, unique=True)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="aliases")
    # The merge that gave the address up; its undo takes the alias away (a later merge of the
    # contact moves the alias to that merge's survivor, and its undo moves it back).
    merge = models.ForeignKey(ContactMerge, on_delete=models.CASCADE, related_name="aliases")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "contact aliases"

    def __str__(self) -> str:
        return self.email


class CompanyMatchKey(models.Model):
    """The keys the company duplicate search blocks on (contacts/company_duplicates.py), with the name
    and domain they were computed from.

    They are computed in Python (the public suffix list, the legal forms of company names), which no
    portable SQL can do; the search recomputes, before blocking, every key whose company's name or
    domain differs from the one recorded here (or whose `version` is older than the key rules),
    whatever wrote the company.
    """

    company = models.OneToOneField(Company, primary_key=True, on_delete=models.CASCADE, related_name="match_key")
    name = models.CharField(max_length=200)
    domain = models.CharField(max_length=253)
    version = models.PositiveSmallIntegerField()
    name_key = models.CharField(
        max_length=200, help_text="The name lower-case, without accents, punctuation or legal form"
    )
    first_word = models.CharField(max_length=200, blank=True)
    other_words = models.CharField(max_length=200, blank=True, help_text="The name key after its first word")
    registrable_domain = models.CharField(max_length=253, help_text="e.g. acme.co.uk for shop.acme.co.uk")
    domain_label = models.CharField(max_length=253, blank=True, help_text="The registrable domain less its suffix")

    def __str__(self) -> str:
        return f"match keys of company {self.company_id}"


class CompanyDuplicateCandidate(models.Model):
    """Two companies that may be one organisation, with the evidence and a match score (0-1).

    Stored lower id first, like DuplicateCandidate. A merge deletes the merged-away company and with
    it its candidate rows (the merge's snapshot brings them back on undo); a dismissed pair stays
    dismissed when the search finds it again.
    """

    company_a = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="+")
    company_b = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(help_text="0-1: how sure the match is")
    evidence = models.JSONField(default=list, help_text="Why the pair was found, in words")
    status = models.CharField(max_length=10, choices=DuplicateStatus.choices, default=DuplicateStatus.PENDING)
    found_at = models.DateTimeField(default=timezone.now)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-score", "id"]
        verbose_name = "duplicate company candidate"
        constraints = [
            models.UniqueConstraint(fields=["company_a", "company_b"], name="company_duplicate_pair_unique"),
            models.CheckConstraint(
                condition=models.Q(company_a__lt=models.F("company_b")), name="company_duplicate_pair_order"
            ),
        ]
        # The review queue: pending pairs, best first. company_b's own index serves the cascade.
        indexes = [
            models.Index(fields=["status", "-score"], name="company_duplicate_queue_idx"),
            models.Index(fields=["company_b"], name="company_duplicate_b_idx"),
        ]

    def __str__(self) -> str:
        return f"companies {self.company_a_id} and {self.company_b_id} ({self.score:.2f})"


class CompanyMerge(models.Model):
    """One merge of a company into another, with everything needed to undo it exactly (as ContactMerge)."""

    survivor_id = models.BigIntegerField()
    loser_id = models.BigIntegerField(help_text="The company merged away (deleted; restored by undo)")
    loser_name = models.CharField(max_length=200)
    loser_domain = models.CharField(max_length=253)
    choices = models.JSONField(default=dict, help_text="Field -> 'survivor' or 'loser': whose value was kept")
    snapshot = models.JSONField(default=dict, help_text="The rows as they were before the merge, for undo")
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    merged_at = models.DateTimeField(default=timezone.now)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-merged_at", "-id"]
        indexes = [
            models.Index(fields=["survivor_id"], name="company_merge_survivor_idx"),
            models.Index(fields=["loser_id"], name="company_merge_loser_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.loser_name} ({self.loser_domain}, company {self.loser_id}) into company {self.survivor_id}"

    @property
    def is_undone(self) -> bool:
        return self.undone_at is not None


class CompanyAlias(models.Model):
    """A domain a company answers to since a merge (the merged-away company's, or the survivor's own
    when the merge kept the other's): upserts that match companies by domain read it as this
    company's, as ContactAlias does for e-mail addresses; undoing the merge removes it."""

    domain = models.CharField(max_length=253, unique=True)
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="aliases")
    merge = models.ForeignKey(CompanyMerge, on_delete=models.CASCADE, related_name="aliases")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "company aliases"

    def __str__(self) -> str:
        return self.domain


# --- The criteria plan (segments/coverage.py reports on it) ----------------------------------------


class Criterion(models.Model):
    """One segmentation criterion of the strategy (e.g. "Company size"), mapped to the fields and
    properties that carry it. Editable in the admin; migration 0015 loads the strategy's plan.

    A criterion mapped to nothing, or only to paths no field or declared property has, needs
    creation; the coverage report measures the rest.
    """

    name = models.CharField(max_length=100, unique=True)
    layer = models.CharField(max_length=20, choices=Layer.choices)
    fields = models.JSONField(
        default=list, blank=True, help_text='Rule field paths that carry it, e.g. ["company.employee_count"]'
    )
    suggested_property = models.CharField(
        max_length=63, blank=True, help_text="Key to declare when no field carries it yet, e.g. expansion_potential"
    )
    description = models.TextField(blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "criteria"

    def __str__(self) -> str:
        return f"{self.name} ({self.get_layer_display()})"

    def clean(self) -> None:
        if not isinstance(self.fields, list) or not all(isinstance(p, str) and p for p in self.fields):
            raise ValidationError({"fields": 'Enter a list of field paths, e.g. ["company.industry", "country"].'})
        if self.suggested_property and not PROPERTY_KEY.match(self.suggested_property):
            raise ValidationError(
                {"suggested_property": "Use lower-case letters, digits and underscores, starting with a letter."}
            )


class HygieneRun(models.Model):
    """One list hygiene check (contacts/hygiene.py): how many contacts it covered and changed, and
    the count of each reachability after it (the trend the report draws)."""

    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    full = models.BooleanField(default=True, help_text="All contacts, or some picked in the admin")
    contacts = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, help_text="Reachability -> contacts, over all contacts, after the run")
    typo_domains = models.JSONField(default=dict, help_text="Mistyped domain -> the one meant, as found")

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"hygiene check of {self.started_at:%Y-%m-%d %H:%M} ({self.changed} changed)"


class PendingChange(models.Model):
    """A contact whose data changed and whose derived data and readers have not caught up yet
    (contacts/catch_up.py).

    Written in the transaction that changed the contact: a committed change is never lost, whatever
    happens to the process after the commit. `derive`: the contact's own data changed, so its
    metrics and scores are recomputed before its segments re-read it; otherwise only data derived
    from it changed (its segments re-read it). A catch-up task claims rows, then deletes them.
    """

    # No foreign key: a deleted contact is still announced, so that its segments let it go.
    contact_id = models.BigIntegerField()
    derive = models.BooleanField()
    claim = models.UUIDField(null=True, blank=True, help_text="The catch-up task working on it")
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One waiting row per contact and kind: a burst of writes to one contact is one row.
            models.UniqueConstraint(
                fields=["contact_id", "derive"], condition=models.Q(claim=None), name="pending_change_waiting_once"
            ),
        ]
        indexes = [models.Index(fields=["claim"], name="pending_change_claim")]

    def __str__(self) -> str:
        return f"contact {self.contact_id} ({'changed' if self.derive else 'derived data changed'})"


class CatchUpState(models.Model):
    """The one row (pk 1) that keeps catch-up tasks to one at a time (contacts/catch_up.py): whether
    one is queued; which one holds the lease, on which worker, since when, and its last sign of
    life; and how the last one that failed failed, for the health page and the back-off."""

    queued_at = models.DateTimeField(null=True, blank=True)
    runner = models.UUIDField(null=True, blank=True, help_text="The task holding the lease")
    running_since = models.DateTimeField(null=True, blank=True, help_text="When the running task took the lease")
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker running (or that ran) it")
    session = models.CharField(
        max_length=100, blank=True, help_text="PostgreSQL: that worker's database session (pid@start)"
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="The running task's last sign of life (every RUN_HEARTBEAT_SECONDS)"
    )
    failures = models.PositiveIntegerField(default=0, help_text="Catch-up tasks failed in a row")
    failed_at = models.DateTimeField(null=True, blank=True, help_text="When the last failure was found")
    last_error = models.TextField(blank=True, help_text="Why the last failed task failed")
    retry_at = models.DateTimeField(null=True, blank=True, help_text="No task runs before this after a failure")

    def __str__(self) -> str:
        return f"catch-up: queued {self.queued_at}, running since {self.running_since}"
