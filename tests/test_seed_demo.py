from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, DecimalField, Max, Min, OuterRef, Subquery, Sum
from django.utils import timezone

from contacts.demo_data import HISTORY, TOPICS
from contacts.models import Activity, Company, Contact, Deal, LifecycleChange, PropertyDefinition
from contacts.partitions import DEFAULT_PARTITION
from tests.announcements import hear_changes
from tests.shared_rows import made_once, run_on_commit_hooks

N = 400


@pytest.fixture(scope="module")
def announced_by_seeding(django_db_setup, django_db_blocker):
    """The demo seeded once for the module (tests/shared_rows.py); what it announced as changed."""
    with made_once(django_db_blocker):
        output = StringIO()
        with pytest.MonkeyPatch.context() as patch:
            announced = hear_changes(patch)
            with run_on_commit_hooks():
                call_command("seed_demo", contacts=N, seed=42, stdout=output)
        assert f"{N} contacts" in output.getvalue()
        yield announced


@pytest.fixture
def seeded(announced_by_seeding, db):
    return list(announced_by_seeding)


def test_it_creates_the_requested_contacts_and_an_eighth_as_many_companies(seeded):
    assert Contact.objects.count() == N
    assert Company.objects.count() == N // 8
    assert LifecycleChange.objects.count() >= N
    assert Deal.objects.exists()


def test_every_contact_has_between_5_and_200_activities_over_the_last_18_months(seeded):
    per_contact = Contact.objects.annotate(n=Count("activities")).aggregate(low=Min("n"), high=Max("n"))
    window = Activity.objects.aggregate(first=Min("occurred_at"), last=Max("occurred_at"))

    assert per_contact["low"] >= 5
    assert per_contact["high"] <= 200
    assert per_contact["high"] > 40
    assert window["first"] >= timezone.now() - HISTORY - timedelta(days=1)
    assert window["last"] <= timezone.now()


def test_distributions_are_not_degenerate(seeded):
    def distinct(queryset, field):
        return set(queryset.values_list(field, flat=True).distinct())

    assert len(distinct(Contact.objects, "lifecycle_stage")) >= 6
    assert len(distinct(Contact.objects, "job_function")) >= 6
    assert len(distinct(Contact.objects, "seniority")) >= 5
    assert len(distinct(Contact.objects, "country")) >= 5
    assert len(distinct(Company.objects, "industry")) >= 6
    assert {"bounced", "unsubscribed", "valid"} <= distinct(Contact.objects, "email_status")
    assert Contact.objects.filter(do_not_contact=True).exists()
    assert set(TOPICS) == distinct(Activity.objects, "topic")
    kinds = distinct(Activity.objects, "kind")
    assert {"email_open", "pricing_view", "demo_request", "purchase", "support_ticket_opened"} <= kinds
    assert {"support_ticket_closed"} <= kinds
    sizes = Company.objects.aggregate(low=Min("employee_count"), high=Max("employee_count"))
    assert sizes["low"] < 20
    assert sizes["high"] > 1000
    assert Company.objects.filter(is_competitor=True).exists()
    assert not Contact.objects.filter(company__is_competitor=True).exclude(lifecycle_stage="other").exists()
    assert Company.objects.filter(is_target_account=True).exists()


def test_lifecycle_history_agrees_with_the_contacts(seeded):
    latest = LifecycleChange.objects.filter(contact=OuterRef("pk")).order_by("-changed_at", "-id")
    contacts = Contact.objects.annotate(
        last_stage=Subquery(latest.values("to_stage")[:1]), last_at=Subquery(latest.values("changed_at")[:1])
    )

    for contact in contacts:
        assert contact.last_stage == contact.lifecycle_stage
        assert contact.last_at == contact.lifecycle_changed_at


def test_customers_have_customer_since_purchases_and_their_lifetime_value(seeded):
    purchases = (
        Activity.objects.filter(contact=OuterRef("pk"), kind="purchase")
        .values("contact")
        .annotate(total=Sum("value"))
        .values("total")
    )
    customers = Contact.objects.filter(lifecycle_stage__in=["customer", "evangelist"]).annotate(
        purchased=Subquery(purchases, output_field=DecimalField())
    )
    became = {
        change.contact_id: timezone.localdate(change.changed_at)
        for change in LifecycleChange.objects.filter(to_stage="customer")
    }

    assert customers.count() > N // 10
    for customer in customers:
        assert customer.customer_since == became[customer.pk]
        assert customer.purchased == customer.lifetime_value > 0
    assert not Contact.objects.exclude(pk__in=became).filter(customer_since__isnull=False).exists()
    assert Deal.objects.filter(stage="won").count() == Activity.objects.filter(kind="purchase").count()


def test_deals_are_consistent(seeded):
    assert not Deal.objects.filter(stage="open", closed_at__isnull=False).exists()
    assert not Deal.objects.exclude(stage="open").filter(closed_at__isnull=True).exists()
    assert {"open", "won", "lost"} == set(Deal.objects.values_list("stage", flat=True).distinct())


def test_owners_are_sales_reps_without_admin_access(seeded):
    owned = Contact.objects.exclude(owner=None)

    assert owned.count() > N // 3
    owners = {contact.owner for contact in owned.select_related("owner")}
    assert len(owners) >= 4
    for owner in owners:
        assert not owner.is_staff
        assert owner.groups.filter(name="Sales").exists()
        assert owner.has_perm("contacts.view_contact")


def test_custom_properties_are_declared_typed_and_filled(seeded):
    keys = {"preferred_channel", "nps_score", "beta_tester"}
    assert keys <= set(PropertyDefinition.objects.values_list("key", flat=True))
    with_props = Contact.objects.exclude(properties={})

    assert with_props.count() > N // 3
    for contact in with_props:
        assert PropertyDefinition.objects.validate_properties(contact.properties) == []
    assert Contact.objects.filter(properties__has_key="nps_score").exists()


@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql", reason="partitions are PostgreSQL's"
)
def test_every_activity_is_stored_in_its_months_partition(seeded):
    # the test database was migrated empty, so only the months from then on had partitions
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {DEFAULT_PARTITION}")
        assert cursor.fetchone()[0] == 0
    assert Activity.objects.filter(occurred_at__lt=timezone.now() - timedelta(days=300)).exists()


def test_it_announces_all_seeded_contacts_once(seeded):
    assert seeded == [sorted(Contact.objects.values_list("pk", flat=True))]


def test_it_refuses_a_database_that_has_contacts(seeded):
    with pytest.raises(CommandError, match=r"already has 400 contacts.*--force"):
        call_command("seed_demo", contacts=10)

    assert Contact.objects.count() == N


def test_force_adds_demo_data_beside_existing_contacts(seeded):
    call_command("seed_demo", contacts=50, seed=42, force=True, stdout=StringIO())

    assert Contact.objects.count() == N + 50
    assert Company.objects.count() == N // 8 + 6
