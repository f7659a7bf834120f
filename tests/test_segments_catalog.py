from io import StringIO

from django.core.management import call_command
from django.utils import timezone

from contacts.metrics.compute import compute_metrics
from segments.catalog import CATALOG
from segments.models import RuleVersion, Segment
from segments.refresh import refresh_all
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory
from tests.segments_support import member_ids


def test_load_catalog_installs_the_starter_segments_once(db):
    first, second = StringIO(), StringIO()

    call_command("load_catalog", stdout=first)
    call_command("load_catalog", stdout=second)

    assert Segment.objects.count() == len(CATALOG) == 19
    assert f"{len(CATALOG)} segment(s) created" in first.getvalue()
    assert "0 segment(s) created" in second.getvalue()
    assert RuleVersion.objects.count() == len(CATALOG)
    assert all(segment.description for segment in Segment.objects.all())
    enterprise = Segment.objects.get(slug="enterprise")
    assert enterprise.children.count() == 3
    assert sorted(Segment.objects.filter(is_global=True).values_list("slug", flat=True)) == [
        "suppress-competitors",
        "suppress-unreachable",
    ]
    assert Segment.objects.filter(kind="suppression").count() == 4


def test_the_catalog_builds_on_real_data(db):
    big = CompanyFactory(employee_count=5000, is_target_account=True)
    rival = CompanyFactory(is_competitor=True)
    target = ContactFactory(company=big, lifecycle_stage="customer", product_adoption=85)
    reader = ContactFactory()
    for _ in range(2):
        ActivityFactory(contact=reader, kind="page_view", topic="Cloud-Migration", occurred_at=timezone.now())
    spy = ContactFactory(company=rival)
    call_command("load_catalog", stdout=StringIO())
    compute_metrics()

    results = refresh_all()

    assert {r.status for r in results} == {"ok"}, [r.error for r in results if r.error]
    assert member_ids(Segment.objects.get(slug="enterprise-target-accounts")) == {target.pk}
    assert member_ids(Segment.objects.get(slug="enterprise-expansion-candidates")) == {target.pk}
    assert member_ids(Segment.objects.get(slug="cloud-migration-readers")) == {reader.pk}
    assert member_ids(Segment.objects.get(slug="suppress-competitors")) == {spy.pk}


def test_first_run_loads_and_builds_the_catalog_once_and_never_brings_back_a_deleted_segment(db):
    reader = ContactFactory()
    ActivityFactory(contact=reader, kind="page_view", topic="cloud-migration", occurred_at=timezone.now())
    compute_metrics()

    call_command("load_catalog", "--first-run", "--refresh", stdout=StringIO())
    readers = Segment.objects.get(slug="cloud-migration-readers")
    assert Segment.objects.count() == len(CATALOG)
    assert readers.last_refresh_status == "ok"
    assert member_ids(readers) == {reader.pk}

    Segment.objects.get(slug="bottom-40-engagement").delete()
    again = StringIO()
    call_command("load_catalog", "--first-run", "--refresh", stdout=again)

    assert not Segment.objects.filter(slug="bottom-40-engagement").exists()
    assert "not loaded again" in again.getvalue()
