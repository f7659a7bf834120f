"""factory-boy factories for tests. Fixed, readable defaults; override what a test is about."""

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from activation.models import (
    Activation,
    Automation,
    Campaign,
    CampaignVariant,
    Destination,
    DestinationKind,
    NurtureSequence,
)
from contacts.models import Activity, ActivityKind, Company, Contact, Deal, PropertyDefinition
from segments.models import Segment


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("user-password-123")


class CompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Company

    name = factory.Sequence(lambda n: f"Company {n}")
    domain = factory.Sequence(lambda n: f"company{n}.example")
    industry = "software"
    employee_count = 100
    country = "US"


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    email = factory.Sequence(lambda n: f"contact{n}@example.com")
    first_name = "Ada"
    last_name = factory.Sequence(lambda n: f"Person{n}")
    country = "US"


class PropertyDefinitionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PropertyDefinition
        django_get_or_create = ("key",)

    key = factory.Sequence(lambda n: f"prop_{n}")
    label = factory.LazyAttribute(lambda p: p.key.replace("_", " ").title())
    type = "text"
    layer = "firmographic"


class ActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Activity

    contact = factory.SubFactory(ContactFactory)
    kind = ActivityKind.PAGE_VIEW
    occurred_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))


class DealFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deal

    name = factory.Sequence(lambda n: f"Deal {n}")
    contact = factory.SubFactory(ContactFactory)
    amount = 10000


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    name = factory.Sequence(lambda n: f"Segment {n}")
    slug = factory.Sequence(lambda n: f"segment-{n}")
    kind = "dynamic"
    rule = factory.LazyFunction(lambda: {"field": "lifecycle_stage", "op": "eq", "value": "mql"})


class DestinationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Destination

    name = factory.Sequence(lambda n: f"Destination {n}")
    kind = DestinationKind.CSV
    csv_columns = factory.LazyFunction(lambda: ["email", "first_name", "last_name"])
    min_audience_size = 0


class ActivationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Activation

    name = factory.Sequence(lambda n: f"Activation {n}")
    segment = factory.SubFactory(SegmentFactory)
    destination = factory.SubFactory(DestinationFactory)


class NurtureSequenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NurtureSequence

    name = factory.Sequence(lambda n: f"Nurture {n}")
    slug = factory.Sequence(lambda n: f"nurture-{n}")


class AutomationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Automation

    name = factory.Sequence(lambda n: f"Automation {n}")
    trigger_segment = factory.SubFactory(SegmentFactory)
    trigger = "join"


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")
    slug = factory.Sequence(lambda n: f"campaign-{n}")
    subject = "Our default subject"
    preheader = "Default preheader"
    content_blocks = factory.LazyFunction(lambda: [{"type": "text", "text": "Default body"}])
    cta_text = "Learn more"
    cta_url = "https://example.com/default"


class CampaignVariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CampaignVariant

    campaign = factory.SubFactory(CampaignFactory)
    segment = factory.SubFactory(SegmentFactory)
    priority = factory.Sequence(lambda n: n + 1)
    subject = factory.LazyAttribute(lambda v: f"Subject for {v.segment.slug}")
    cta_text = factory.LazyAttribute(lambda v: f"CTA for {v.segment.slug}")
    cta_url = factory.LazyAttribute(lambda v: f"https://example.com/{v.segment.slug}")
