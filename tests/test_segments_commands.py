from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from contacts.models import parse_iso_datetime
from segments.editing import save_segment
from segments.models import Segment
from tests.factories import ContactFactory
from tests.segments_support import member_ids


def _segment(slug: str, rule: dict, **fields) -> Segment:
    return save_segment(Segment(name=slug.title(), slug=slug, kind="dynamic", rule=rule, **fields))


def test_refresh_segments_prints_a_row_per_segment_and_stores_now(db):
    ContactFactory(lead_score=80, lifecycle_stage="mql")
    hot = _segment("hot", {"field": "lead_score", "op": "gte", "value": 50})
    _segment("hot-mql", {"field": "lifecycle_stage", "op": "eq", "value": "mql"}, parent=hot)
    out = StringIO()

    call_command("refresh_segments", "hot-mql", "hot", "--now", "2026-03-01T09:00:00+00:00", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["segment", "status", "size", "added", "removed", "ms"]
    assert [line.split()[:5] for line in lines[1:3]] == [["hot", "ok", "1", "1", "0"], ["hot-mql", "ok", "1", "1", "0"]]
    hot.refresh_from_db()
    assert hot.last_refresh_now == parse_iso_datetime("2026-03-01T09:00:00+00:00")
    assert len(member_ids(hot)) == 1


def test_refresh_segments_refuses_unknown_slugs_and_bad_times(db):
    with pytest.raises(CommandError, match="No segment with slug nope"):
        call_command("refresh_segments", "nope")
    with pytest.raises(CommandError, match="not an ISO-8601"):
        call_command("refresh_segments", "--now", "yesterday")


def test_refresh_segments_fails_loudly_when_a_refresh_fails(db):
    segment = _segment("hot", {"field": "lead_score", "op": "gte", "value": 50})
    Segment.objects.filter(pk=segment.pk).update(rule={"field": "no_such_field", "op": "eq", "value": 1})
    out = StringIO()

    with pytest.raises(CommandError, match="1 segment refresh"):
        call_command("refresh_segments", stdout=out)

    assert "no_such_field" in out.getvalue()
