import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from segments.models import Membership, Segment
from tests.factories import ContactFactory

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="bench_scale measures PostgreSQL")


@pytest.mark.django_db(transaction=True)
def test_one_size_is_measured_and_tabled_beside_the_stored_ones(tmp_path):
    output, out = tmp_path / "scale.json", StringIO()
    smaller = {"contacts": 500, "cold_build_s": 1.0, "sweep_s": 0.5, "preview_p50_ms": 2.0, "metrics_s": 0.25,
               "export_s": 0.5, "refresh_contacts_p50_ms": 10.0, "refresh_contacts_p95_ms": 20.0}  # fmt: skip
    output.write_text(json.dumps({"500": smaller}))

    call_command("bench_scale", "--sizes", "1000", "--latency-rounds", "3", "--output", str(output), stdout=out)

    stored = json.loads(output.read_text())
    assert set(stored) == {"500", "1000"}
    figures = stored["1000"]
    assert (figures["contacts"], figures["activities"]) == (1000, 10_000)
    for key in ("cold_build_s", "sweep_s", "preview_p50_ms", "metrics_s", "export_s", "refresh_contacts_p95_ms"):
        assert figures[key] > 0, key
    largest = max(Segment.objects.filter(slug__startswith="bench-"), key=lambda s: s.memberships.count())
    assert figures["exported"] == Membership.objects.filter(segment=largest).count() > 0
    table = out.getvalue()
    assert "1,000 contacts" in table
    assert "500 contacts" in table
    # the cold build: 1.0 s for 500 contacts is 2,000 us each; the new size's ratio is taken to it
    cold = next(line for line in table.splitlines() if line.startswith("cold build"))
    assert "2000.00us 1.00x" in cold
    per_contact = figures["cold_build_s"] * 1e6 / 1000
    assert f"{per_contact:.2f}us {per_contact / 2000:.2f}x" in cold


def test_it_refuses_a_database_that_holds_data(db):
    ContactFactory()
    with pytest.raises(CommandError, match="has contacts or segments"):
        call_command("bench_scale", "--sizes", "1000")


def test_sizes_are_checked(db):
    with pytest.raises(CommandError, match="at least 1,000"):
        call_command("bench_scale", "--sizes", "10")
    with pytest.raises(CommandError, match="whole numbers"):
        call_command("bench_scale", "--sizes", "1e5")
