"""The database triggers that keep derived data exact are all in place after migrating.

They are invisible to Django's model state, so a later migration that rebuilds one of their tables
(SQLite rebuilds a table to alter a column, dropping its triggers) would lose them silently: the
activity tally (contacts migration 0009) and the analytics' changed hours (segments 0018, 0019:
inserts and updates, not deletes)."""

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

DIRTY_SOURCES = {
    "activity": "contacts_activity",
    "lifecycle": "contacts_lifecyclechange",
    "deal": "contacts_deal",
    "membership": "segments_membershipchange",
}


def triggers() -> set[tuple[str, str]]:
    """(table, trigger name) of every trigger the project made."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal")
        else:
            cursor.execute("SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'")
        return {(table, name) for table, name in cursor.fetchall()}


def test_the_activity_tally_triggers_are_in_place():
    events = ["add", "remove", "move"] + (["clear"] if connection.vendor == "postgresql" else [])
    expected = {("contacts_activity", f"contacts_activitytally_{event}") for event in events}
    assert expected <= triggers()


def test_the_analytics_changed_hour_triggers_record_inserts_and_updates_not_deletes():
    present = triggers()
    for source, table in DIRTY_SOURCES.items():
        for event in ("insert", "update"):
            assert (table, f"segments_analyticsdirtyhour_{source}_{event}") in present
        assert (table, f"segments_analyticsdirtyhour_{source}_delete") not in present
