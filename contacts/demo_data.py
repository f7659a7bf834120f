"""A believable demo CRM: companies, contacts, their stage history, 18 months of activity, deals.

`seed_demo(contacts=N)` builds everything in memory (factory-boy for companies and contacts,
plain model instances for the high-volume activity stream) and writes it with bulk_create in
batches inside one transaction: no save() per row, so 10,000 contacts take seconds, not minutes.
bulk_create skips Contact.save, so this module writes the LifecycleChange rows itself, consistent
with each contact's lifecycle_changed_at and customer_since.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import factory
import factory.random
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connections, transaction
from django.utils import timezone

from contacts.models import (
    Activity,
    ActivityKind,
    ActivityTally,
    Company,
    Contact,
    Deal,
    DealStage,
    EmailStatus,
    JobFunction,
    Layer,
    LifecycleChange,
    LifecycleStage,
    PropertyDefinition,
    PropertySource,
    PropertyType,
    Seniority,
)
from contacts.partitions import ensure_partitions
from contacts.roles import SALES
from contacts.table_statistics import analyze
from crmseg_site.model_fields import column

BATCH = 2000
ACTIVITY_BATCH = 5000
ACTIVITY_FIELDS = ["contact", "kind", "occurred_at", "topic", "product", "url", "campaign", "value", "external_id",
                   "created_at"]  # fmt: skip
HISTORY = timedelta(days=548)  # 18 months of activity

INDUSTRIES = {
    "software": 18,
    "financial-services": 12,
    "healthcare": 10,
    "manufacturing": 10,
    "retail": 9,
    "professional-services": 8,
    "telecommunications": 6,
    "education": 6,
    "government": 5,
    "energy": 5,
    "media": 5,
    "logistics": 6,
}
# (country, region, city, time zone, language, weight)
PLACES = [
    ("US", "California", "San Francisco", "America/Los_Angeles", "en", 8),
    ("US", "California", "San Diego", "America/Los_Angeles", "en", 3),
    ("US", "New York", "New York", "America/New_York", "en", 8),
    ("US", "Texas", "Austin", "America/Chicago", "en", 4),
    ("US", "Illinois", "Chicago", "America/Chicago", "en", 4),
    ("US", "Washington", "Seattle", "America/Los_Angeles", "en", 3),
    ("US", "Massachusetts", "Boston", "America/New_York", "en", 4),
    ("CA", "Ontario", "Toronto", "America/Toronto", "en", 3),
    ("CA", "British Columbia", "Vancouver", "America/Vancouver", "en", 2),
    ("GB", "England", "London", "Europe/London", "en", 6),
    ("GB", "England", "Manchester", "Europe/London", "en", 2),
    ("GB", "Scotland", "Edinburgh", "Europe/London", "en", 1),
    ("DE", "Bavaria", "Munich", "Europe/Berlin", "de", 3),
    ("DE", "Berlin", "Berlin", "Europe/Berlin", "de", 3),
    ("DE", "Hesse", "Frankfurt", "Europe/Berlin", "de", 2),
    ("FR", "Île-de-France", "Paris", "Europe/Paris", "fr", 3),
    ("NL", "North Holland", "Amsterdam", "Europe/Amsterdam", "nl", 2),
    ("ES", "Community of Madrid", "Madrid", "Europe/Madrid", "es", 2),
    ("SE", "Stockholm County", "Stockholm", "Europe/Stockholm", "sv", 1),
    ("IN", "Karnataka", "Bengaluru", "Asia/Kolkata", "en", 3),
    ("IN", "Maharashtra", "Mumbai", "Asia/Kolkata", "en", 2),
    ("JP", "Tokyo", "Tokyo", "Asia/Tokyo", "ja", 2),
    ("SG", "Singapore", "Singapore", "Asia/Singapore", "en", 2),
    ("AU", "New South Wales", "Sydney", "Australia/Sydney", "en", 2),
    ("BR", "São Paulo", "São Paulo", "America/Sao_Paulo", "pt", 2),
]
PLACE_BY_CITY = {place[:3]: place for place in PLACES}
TECHNOLOGIES = [
    "aws", "azure", "gcp", "kubernetes", "docker", "terraform", "snowflake", "databricks", "salesforce",
    "hubspot", "okta", "crowdstrike", "splunk", "datadog", "servicenow", "sap", "oracle", "postgresql",
    "mongodb", "tableau", "github", "jira",
]  # fmt: skip
# Topic -> the product that answers it.
PRODUCTS = {
    "cloud-migration": "CloudShift",
    "cybersecurity": "SecureEdge",
    "data-analytics": "InsightHub",
    "devops": "PipelineCI",
    "ai-ml": "ModelForge",
    "compliance": "ComplyKit",
}
TOPICS = list(PRODUCTS)
VALUES = [
    "innovation",
    "cost-efficiency",
    "security-first",
    "sustainability",
    "customer-centric",
    "speed",
    "reliability",
]
PERSONAL_DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com"]
REPS = ["Alex Rivera", "Sam Okafor", "Jordan Lee", "Maria Garcia", "Priya Nair", "Tom Becker"]

EMAIL_STATUSES = {EmailStatus.VALID: 91, EmailStatus.BOUNCED: 4, EmailStatus.UNSUBSCRIBED: 5}
STAGE_MIX = {
    LifecycleStage.SUBSCRIBER: 15,
    LifecycleStage.LEAD: 30,
    LifecycleStage.MQL: 14,
    LifecycleStage.SQL: 8,
    LifecycleStage.OPPORTUNITY: 7,
    LifecycleStage.CUSTOMER: 18,
    LifecycleStage.EVANGELIST: 4,
    LifecycleStage.OTHER: 4,
}
FUNNEL: list[str] = [
    LifecycleStage.SUBSCRIBER,
    LifecycleStage.LEAD,
    LifecycleStage.MQL,
    LifecycleStage.SQL,
    LifecycleStage.OPPORTUNITY,
    LifecycleStage.CUSTOMER,
    LifecycleStage.EVANGELIST,
]
# Mean number of activities above the minimum of 5, by stage: engaged contacts do more.
ACTIVITY_MEAN = {"subscriber": 8, "lead": 14, "mql": 28, "sql": 36, "opportunity": 48, "customer": 42,
                 "evangelist": 70, "other": 6}  # fmt: skip
# Marketing and web activity everyone produces, with relative weights.
EVERYDAY_KINDS = {
    ActivityKind.EMAIL_OPEN: 34,
    ActivityKind.EMAIL_CLICK: 12,
    ActivityKind.SITE_VISIT: 12,
    ActivityKind.PAGE_VIEW: 24,
    ActivityKind.CONTENT_DOWNLOAD: 5,
    ActivityKind.FORM_SUBMIT: 3,
    ActivityKind.WEBINAR_ATTEND: 2,
}
# Buying signals, from MQL on.
BUYING_KINDS = {
    ActivityKind.PRICING_VIEW: 6,
    ActivityKind.FEATURE_COMPARISON: 3,
    ActivityKind.DEMO_REQUEST: 1,
    ActivityKind.SALES_TOUCH: 4,
}
EVERY_KIND = {**EVERYDAY_KINDS, **BUYING_KINDS}
JOB_FUNCTIONS = {
    JobFunction.ENGINEERING: 20,
    JobFunction.IT: 18,
    JobFunction.SECURITY: 10,
    JobFunction.OPERATIONS: 9,
    JobFunction.FINANCE: 7,
    JobFunction.MARKETING: 10,
    JobFunction.SALES: 7,
    JobFunction.PRODUCT: 8,
    JobFunction.HR: 4,
    JobFunction.EXECUTIVE: 4,
    JobFunction.OTHER: 3,
}
SENIORITIES = {
    Seniority.ENTRY: 22,
    Seniority.SENIOR: 28,
    Seniority.MANAGER: 22,
    Seniority.DIRECTOR: 14,
    Seniority.VP: 7,
    Seniority.CXO: 4,
    Seniority.OWNER: 3,
}
TITLES = {
    Seniority.ENTRY: "{f} Analyst",
    Seniority.SENIOR: "Senior {f} Specialist",
    Seniority.MANAGER: "{f} Manager",
    Seniority.DIRECTOR: "Director of {f}",
    Seniority.VP: "VP {f}",
    Seniority.CXO: "Chief {f} Officer",
    Seniority.OWNER: "Founder",
}
PROPERTY_DEFINITIONS = [
    ("preferred_channel", "Preferred channel", PropertyType.CHOICE, ["email", "phone", "events", "social", "chat"],
     Layer.BEHAVIORAL, PropertySource.CAPTURED),
    ("nps_score", "NPS score", PropertyType.NUMBER, [], Layer.PSYCHOGRAPHIC, PropertySource.CAPTURED),
    ("beta_tester", "Beta tester", PropertyType.BOOL, [], Layer.BEHAVIORAL, PropertySource.CAPTURED),
    ("trial_started_on", "Trial started on", PropertyType.DATE, [], Layer.LIFECYCLE, PropertySource.CAPTURED),
    ("certifications", "Certifications", PropertyType.TAGS, [], Layer.TECHNOGRAPHIC, PropertySource.ENRICHED),
    ("account_tier", "Account tier", PropertyType.CHOICE, ["bronze", "silver", "gold", "platinum"], Layer.VALUE,
     PropertySource.DERIVED),
]  # fmt: skip

rng = factory.random.randgen


_cumulative: dict[int, tuple[dict, list, list[int]]] = {}


def pick(weights: dict):
    """A key of `weights` drawn in proportion to its value (cumulative weights cached per table)."""
    cached = _cumulative.get(id(weights))
    if cached is None or cached[0] is not weights:
        cached = _cumulative[id(weights)] = (weights, list(weights), list(itertools.accumulate(weights.values())))
    return rng.choices(cached[1], cum_weights=cached[2])[0]


def employee_count() -> int:
    """Company size, skewed the way real markets are: median ~70, a long tail up to 50,000."""
    return max(1, min(50_000, int(rng.lognormvariate(4.2, 1.9))))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class DemoCompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Company

    name = factory.Faker("company")
    domain = factory.LazyAttribute(lambda c: f"{slug(c.name)[:50]}.{rng.choice(['com', 'com', 'io', 'net', 'co'])}")
    industry = factory.LazyFunction(lambda: pick(INDUSTRIES))
    employee_count = factory.LazyFunction(employee_count)
    annual_revenue = factory.LazyAttribute(lambda c: Decimal(c.employee_count * rng.randint(60, 400) * 1000))
    technologies = factory.LazyFunction(lambda: sorted(rng.sample(TECHNOLOGIES, rng.randint(2, 8))))
    is_target_account = factory.LazyAttribute(lambda c: rng.random() < (0.35 if c.employee_count > 1000 else 0.05))

    class Params:
        place = factory.LazyFunction(lambda: rng.choices(PLACES, weights=[p[5] for p in PLACES])[0])

    country = factory.LazyAttribute(lambda c: c.place[0])
    region = factory.LazyAttribute(lambda c: c.place[1])
    city = factory.LazyAttribute(lambda c: c.place[2])


def contact_email(contact) -> str:
    local = f"{slug(contact.first_name)}.{slug(contact.last_name)}".replace("-", "")
    if contact.company is None:
        return f"{local}{rng.randint(1, 9999)}@{rng.choice(PERSONAL_DOMAINS)}"
    return f"{local}@{contact.company.domain}"


def job_title(contact) -> str:
    function = JobFunction(contact.job_function).label if contact.job_function != JobFunction.OTHER else "Business"
    return TITLES[contact.seniority].format(f=function)


def maybe(share: float, value):
    return value() if rng.random() < share else None


def sometimes(share: float, choices: list[str]) -> str:
    """One of the choices for `share` of contacts, blank for the rest (optional demographics)."""
    return rng.choice(choices) if rng.random() < share else ""


class DemoContactFactory(factory.django.DjangoModelFactory):
    """A contact; the seeder passes company, place, stage and history, the rest is drawn here."""

    class Meta:
        model = Contact

    class Params:
        place = factory.LazyFunction(lambda: rng.choices(PLACES, weights=[p[5] for p in PLACES])[0])

    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(contact_email)
    phone = factory.LazyFunction(lambda: maybe(0.6, lambda: f"+1{rng.randint(2012000000, 9899999999)}") or "")
    job_function = factory.LazyFunction(lambda: pick(JOB_FUNCTIONS))
    seniority = factory.LazyFunction(lambda: pick(SENIORITIES))
    job_title = factory.LazyAttribute(job_title)
    country = factory.LazyAttribute(lambda c: c.place[0])
    region = factory.LazyAttribute(lambda c: c.place[1])
    city = factory.LazyAttribute(lambda c: c.place[2])
    time_zone = factory.LazyAttribute(lambda c: c.place[3])
    language = factory.LazyAttribute(lambda c: c.place[4])
    postal_code = factory.Faker("postcode")
    birth_year = factory.LazyFunction(lambda: maybe(0.6, lambda: rng.randint(1958, 2001)))
    gender = factory.LazyFunction(lambda: sometimes(0.5, ["female", "male", "nonbinary", "undisclosed"]))
    income_band = factory.LazyFunction(lambda: sometimes(0.35, ["under_50k", "50k_100k", "100k_200k", "over_200k"]))
    education = factory.LazyFunction(lambda: sometimes(0.4, ["secondary", "bachelor", "master", "doctorate"]))
    marital_status = factory.LazyFunction(lambda: sometimes(0.3, ["single", "married", "partnered"]))
    interests = factory.LazyFunction(lambda: sorted(rng.sample(TOPICS, rng.randint(1, 3))))
    values = factory.LazyFunction(lambda: sorted(rng.sample(VALUES, rng.randint(0, 3))))
    email_status = factory.LazyFunction(lambda: pick(EMAIL_STATUSES))
    do_not_contact = factory.LazyFunction(lambda: rng.random() < 0.02)


@dataclass
class Plan:
    """What one contact's history looks like before it is turned into rows."""

    contact: Contact
    path: list[str]
    changed_at: list[datetime]
    activities: list[tuple] = field(default_factory=list)
    deals: list[Deal] = field(default_factory=list)


def stage_path(final: str) -> list[str]:
    start = LifecycleStage.SUBSCRIBER if rng.random() < 0.35 else LifecycleStage.LEAD
    if final == LifecycleStage.OTHER:
        return [start, final]
    if final == LifecycleStage.SUBSCRIBER:
        return [final]
    return FUNNEL[FUNNEL.index(start) : FUNNEL.index(final) + 1]


def spread(start: datetime, end: datetime, n: int) -> list[datetime]:
    """n sorted moments between start and end, the first at start."""
    span = (end - start).total_seconds()
    return [start, *sorted(start + timedelta(seconds=rng.uniform(0, span)) for _ in range(n - 1))]


def stage_times(path: list[str], start: datetime, end: datetime) -> list[datetime]:
    """When the contact entered each stage of `path`, the first at `start`. A customer was won at
    any time of its life, the stages before squeezed in ahead of it: customers are then won all
    through the history (and some come up for renewal), not mostly in its last months."""
    if LifecycleStage.CUSTOMER not in path:
        return spread(start, end, len(path))
    won = path.index(LifecycleStage.CUSTOMER)
    became = between(start + (end - start) / 10, end)
    after = sorted(between(became, end) for _ in path[won + 1 :])
    return [*spread(start, became, won), became, *after]


def between(start: datetime, end: datetime) -> datetime:
    return start + timedelta(seconds=rng.uniform(0, max(0.0, (end - start).total_seconds())))


def plan_contact(contact: Contact, *, now: datetime) -> Plan:
    # People at competitors sign up to watch us; they never buy.
    competitor = contact.company is not None and contact.company.is_competitor
    final = LifecycleStage.OTHER if competitor else pick(STAGE_MIX)
    path = stage_path(final)
    created = now - timedelta(days=rng.uniform(7, HISTORY.days))
    changed_at = stage_times(path, created, now - timedelta(hours=1))
    contact.created_at = created
    contact.lifecycle_stage = final
    contact.lifecycle_changed_at = changed_at[-1]
    if LifecycleStage.CUSTOMER in path:
        became_customer = changed_at[path.index(LifecycleStage.CUSTOMER)]
        contact.customer_since = timezone.localdate(became_customer)
        contact.renewal_date = next_renewal(contact.customer_since, on_or_after=timezone.localdate(now))
        contact.product_adoption = rng.randint(10, 100)
    if final in (LifecycleStage.SQL, LifecycleStage.OPPORTUNITY):
        contact.estimated_deal_size = Decimal(rng.randrange(5_000, 250_000, 500))
    contact.technologies = sorted(set(rng.sample(TECHNOLOGIES, rng.randint(0, 4))))
    contact.properties = contact_properties(contact, path)
    return Plan(contact=contact, path=path, changed_at=changed_at)


def next_renewal(since: date, *, on_or_after: date) -> date:
    """The first yearly anniversary of `since` on or after a day (a 29 February start renews on the 28th)."""
    day = 28 if (since.month, since.day) == (2, 29) else since.day
    renewal = date(max(on_or_after.year, since.year + 1), since.month, day)
    return renewal if renewal >= on_or_after else renewal.replace(year=renewal.year + 1)


def contact_properties(contact: Contact, path: list[str]) -> dict:
    props: dict = {}
    if rng.random() < 0.6:
        props["preferred_channel"] = rng.choice(["email", "email", "phone", "events", "social", "chat"])
    if contact.customer_since and rng.random() < 0.7:
        props["nps_score"] = min(10, max(0, round(rng.gauss(7.5, 2.2))))
    if contact.customer_since:
        props["beta_tester"] = rng.random() < 0.2
        props["account_tier"] = rng.choice(["bronze", "silver", "silver", "gold", "platinum"])
    if LifecycleStage.MQL in path and rng.random() < 0.5:
        props["trial_started_on"] = timezone.localdate(
            contact.created_at + timedelta(days=rng.randint(1, 30))
        ).isoformat()
    if contact.job_function in (JobFunction.ENGINEERING, JobFunction.IT, JobFunction.SECURITY) and rng.random() < 0.3:
        props["certifications"] = sorted(
            rng.sample(["aws-sa", "cka", "cissp", "azure-admin", "gcp-pca"], rng.randint(1, 2))
        )
    return props


def plan_activities(plan: Plan, *, now: datetime) -> None:
    """5–200 activities over the contact's life, topics from its interests, buying signals by stage."""
    contact = plan.contact
    stage = contact.lifecycle_stage
    # At most 175 here: purchases, tickets and a demo request add up to 23 more, 200 in all.
    count = min(175, 5 + int(rng.expovariate(1 / ACTIVITY_MEAN[stage])))
    start = max(contact.created_at, now - HISTORY)
    buying_from = plan.changed_at[plan.path.index(LifecycleStage.MQL)] if LifecycleStage.MQL in plan.path else None
    kinds = EVERY_KIND if buying_from else EVERYDAY_KINDS
    email_ok = contact.email_status == EmailStatus.VALID
    for _ in range(count):
        kind = pick(kinds)
        if kind in (ActivityKind.EMAIL_OPEN, ActivityKind.EMAIL_CLICK) and not email_ok:
            kind = ActivityKind.PAGE_VIEW
        occurred = between(buying_from if buying_from and kind in BUYING_KINDS else start, now)
        plan.activities.append(activity(contact, kind, occurred))
    if stage == LifecycleStage.OPPORTUNITY and buying_from:  # an opportunity was an MQL first
        plan.activities.append(activity(contact, ActivityKind.DEMO_REQUEST, between(buying_from, now)))
        plan.deals.append(deal(contact, amount=contact.estimated_deal_size, created=between(buying_from, now)))
    if contact.customer_since:
        plan_customer(plan, now=now)
    elif buying_from and rng.random() < 0.12:
        plan.deals.append(
            deal(contact, amount=Decimal(rng.randrange(5_000, 150_000, 500)), created=buying_from, lost=now)
        )


def plan_customer(plan: Plan, *, now: datetime) -> None:
    """Purchases (and the won deals behind them) from the day of becoming a customer; support tickets."""
    contact = plan.contact
    became = plan.changed_at[plan.path.index(LifecycleStage.CUSTOMER)]
    size = (contact.company.employee_count if contact.company else None) or 5
    total = Decimal(0)
    for n in range(rng.randint(1, 6)):
        at = became if n == 0 else between(became, now)
        value = Decimal(round(rng.uniform(500, 2_000) * math.sqrt(size), 2))
        plan.activities.append(activity(contact, ActivityKind.PURCHASE, at, value=value))
        plan.deals.append(deal(contact, amount=value, created=at - timedelta(days=rng.randint(7, 90)), won=at))
        total += value
    contact.lifetime_value = total
    for _ in range(rng.randint(0, 8)):
        opened = between(became, now)
        plan.activities.append(activity(contact, ActivityKind.SUPPORT_TICKET_OPENED, opened))
        closed = opened + timedelta(hours=rng.uniform(1, 240))
        if closed < now and rng.random() < 0.85:
            plan.activities.append(activity(contact, ActivityKind.SUPPORT_TICKET_CLOSED, closed))


def activity(contact: Contact, kind: str, occurred: datetime, *, value: Decimal | None = None) -> tuple:
    """One activity as (kind, occurred_at, topic, product, url, campaign, value); see insert_activities."""
    interests = contact.interests
    topic = rng.choice(interests) if interests and rng.random() < 0.75 else rng.choice(TOPICS)
    product = PRODUCTS[topic]
    url = campaign = ""
    if kind in (ActivityKind.EMAIL_OPEN, ActivityKind.EMAIL_CLICK, ActivityKind.WEBINAR_ATTEND):
        campaign = f"{occurred:%Y}-q{(occurred.month - 1) // 3 + 1}-{topic}-nurture"
    if kind in (ActivityKind.PRICING_VIEW, ActivityKind.FEATURE_COMPARISON):
        url = f"https://www.example.com/pricing/{product.lower()}"
    elif kind in (
        ActivityKind.SITE_VISIT,
        ActivityKind.PAGE_VIEW,
        ActivityKind.CONTENT_DOWNLOAD,
        ActivityKind.EMAIL_CLICK,
    ):
        url = f"https://www.example.com/{topic}/{rng.choice(['guide', 'blog', 'case-study', 'whitepaper', 'docs'])}"
    return (kind, occurred, topic, product, url, campaign, value)


def insert_activities(plans: list[Plan], *, now: datetime) -> int:
    """Write every planned activity; returns how many."""
    return insert_activity_rows(
        ((plan.contact.pk, *planned) for plan in plans for planned in plan.activities), created_at=now
    )


def insert_activity_rows(rows: Iterable[tuple], *, created_at: datetime) -> int:
    """Write activities given as (contact id, kind, occurred_at, topic, product, url, campaign,
    value); returns how many.

    Activities are the one table with hundreds of thousands of rows. bulk_create spends most of
    the seeding time compiling SQL value by value for them, so they go in as plain tuples, one
    executemany per batch, with datetimes adapted by the database backend exactly as the ORM does.
    """
    connection = connections[Activity.objects.db]
    quote = connection.ops.quote_name
    columns = [quote(column(Activity, name)) for name in ACTIVITY_FIELDS]
    sql = (
        f"INSERT INTO {quote(Activity._meta.db_table)} ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    adapt = connection.ops.adapt_datetimefield_value
    created = adapt(created_at)
    adapted = (
        (contact_id, kind, adapt(occurred), topic, product, url, campaign, value, None, created)
        for contact_id, kind, occurred, topic, product, url, campaign, value in rows
    )
    written = 0
    with connection.cursor() as cursor:
        while batch := list(itertools.islice(adapted, ACTIVITY_BATCH)):
            cursor.executemany(sql, batch)
            written += len(batch)
    return written


def deal(contact, *, amount, created, won=None, lost=None) -> Deal:
    company = contact.company
    return Deal(
        name=f"{company.name if company else contact.full_name} — {rng.choice(list(PRODUCTS.values()))}",
        contact=contact,
        company=company,
        amount=amount,
        stage=DealStage.WON if won else DealStage.LOST if lost else DealStage.OPEN,
        created_at=created,
        closed_at=won or (between(created, lost) if lost else None),
    )


def sales_reps() -> list:
    """A few sales reps in the Sales group (not staff) to own contacts."""
    User = get_user_model()
    sales = Group.objects.get(name=SALES)
    reps = []
    for name in REPS:
        first, last = name.split()
        username = f"{first}.{last}".lower()
        rep, created = User.objects.get_or_create(
            username=username, defaults={"first_name": first, "last_name": last, "email": f"{username}@example.com"}
        )
        if created:
            rep.set_unusable_password()
            rep.save(update_fields=["password"])
        rep.groups.add(sales)
        reps.append(rep)
    return reps


def declare_properties() -> None:
    for key, label, type_, choices, layer, source in PROPERTY_DEFINITIONS:
        PropertyDefinition.objects.get_or_create(
            key=key, defaults={"label": label, "type": type_, "choices": choices, "layer": layer, "source": source}
        )


def unique(values: list[str], taken: set[str]) -> list[str]:
    """The values with in-run and stored duplicates made distinct by a number before the '@' or '.'."""
    out = []
    for value in values:
        candidate, n = value, 1
        while candidate in taken:
            n += 1
            head, sep, tail = value.partition("@") if "@" in value else value.partition(".")
            candidate = f"{head}{n}{sep}{tail}"
        taken.add(candidate)
        out.append(candidate)
    return out


def build_companies(n: int) -> list[Company]:
    companies = DemoCompanyFactory.build_batch(n)
    # A few competitors (2%, at least one) whose people follow us without ever buying.
    for company in rng.sample(companies, max(1, n // 50)):
        company.is_competitor = True
    taken = set(Company.objects.filter(domain__in=[c.domain for c in companies]).values_list("domain", flat=True))
    for company, domain in zip(companies, unique([c.domain for c in companies], taken), strict=True):
        company.domain = domain
    return companies


def build_contacts(n: int, companies: list[Company]) -> list[Contact]:
    # Bigger companies have more contacts in the CRM, but far from proportionally.
    weights = [(c.employee_count or 1) ** 0.5 for c in companies]
    chosen = rng.choices(companies, weights=weights, k=n)
    contacts = []
    for company in chosen:
        if rng.random() < 0.07:
            contacts.append(DemoContactFactory.build(company=None))
        else:
            place = PLACE_BY_CITY[company.country, company.region, company.city]
            contacts.append(DemoContactFactory.build(company=company, place=place))
    emails = [c.email for c in contacts]
    taken = set()
    for start in range(0, len(emails), BATCH):
        taken |= set(Contact.objects.filter(email__in=emails[start : start + BATCH]).values_list("email", flat=True))
    for contact, email in zip(contacts, unique(emails, taken), strict=True):
        contact.email = email
    return contacts


def assign_owners(contacts: list[Contact], reps: list) -> None:
    engaged = {LifecycleStage.MQL, LifecycleStage.SQL, LifecycleStage.OPPORTUNITY, LifecycleStage.CUSTOMER,
               LifecycleStage.EVANGELIST}  # fmt: skip
    for contact in contacts:
        if contact.lifecycle_stage in engaged or rng.random() < 0.3:
            contact.owner = rng.choice(reps)


# Lead score: points per step down the funnel and one point per this many activities (plus noise);
# contacts/demo_as_of.py takes the same formula back to a past point.
SCORE_PER_STEP = 9
ACTIVITIES_PER_POINT = 4


def funnel_step(stage: str) -> int:
    return FUNNEL.index(stage) if stage in FUNNEL else 0


def score(plan: Plan) -> int:
    """Lead score: how far down the funnel, plus engagement, plus noise."""
    engagement = len(plan.activities) // ACTIVITIES_PER_POINT
    return min(100, funnel_step(plan.path[-1]) * SCORE_PER_STEP + engagement + rng.randint(0, 15))


@dataclass
class Seeded:
    companies: int
    contacts: int
    activities: int
    deals: int
    lifecycle_changes: int
    contact_ids: list[int]


def seed_demo(*, contacts: int, seed: int | None = None, now: datetime | None = None) -> Seeded:
    """Write a demo CRM of `contacts` contacts (plus ~contacts/8 companies) in one transaction."""
    if seed is not None:
        factory.random.reseed_random(seed)
    now = now or timezone.now()
    with transaction.atomic():
        reps = sales_reps()
        declare_properties()
        companies = build_companies(max(1, contacts // 8))
        Company.objects.bulk_create(companies, batch_size=BATCH)
        people = build_contacts(contacts, companies)
        plans = [plan_contact(contact, now=now) for contact in people]
        assign_owners(people, reps)
        for plan in plans:
            plan_activities(plan, now=now)
            plan.contact.lead_score = score(plan)
        Contact.objects.bulk_create(people, batch_size=BATCH)
        changes = [
            LifecycleChange(contact=p.contact, from_stage=before, to_stage=stage, changed_at=at)
            for p in plans
            for before, stage, at in zip([None, *p.path[:-1]], p.path, p.changed_at, strict=True)
        ]
        LifecycleChange.objects.bulk_create(changes, batch_size=BATCH)
        # The months the activities fall in get their partitions first, so no row waits in DEFAULT.
        first = min((occurred for plan in plans for _, occurred, *_ in plan.activities), default=now)
        ensure_partitions(since=first.astimezone(UTC).date())
        activities = insert_activities(plans, now=now)
        deals = [d for p in plans for d in p.deals]
        Deal.objects.bulk_create(deals, batch_size=BATCH)
    # No first refresh or page on these rows should be planned blind (see contacts/table_statistics.py).
    analyze(Company, Contact, LifecycleChange, Activity, ActivityTally, Deal)
    return Seeded(
        companies=len(companies),
        contacts=len(people),
        activities=activities,
        deals=len(deals),
        lifecycle_changes=len(changes),
        contact_ids=[c.pk for c in people],
    )
