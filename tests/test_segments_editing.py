import pytest
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django_q.models import OrmQ

from segments.editing import SegmentInUse, delete_segment, save_segment
from segments.models import RuleVersion, Segment, SegmentReference
from tests.factories import SegmentFactory, UserFactory

MQL = {"field": "lifecycle_stage", "op": "eq", "value": "mql"}
SCORED = {"field": "lead_score", "op": "gte", "value": 50}


def _new(slug: str, **fields) -> Segment:
    defaults = {"name": slug.replace("-", " ").title(), "slug": slug, "kind": "dynamic", "rule": MQL}
    return Segment(**{**defaults, **fields})


def _errors(segment: Segment) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        save_segment(segment)
    return caught.value.message_dict


def test_it_saves_a_dynamic_segment_and_records_its_first_rule_version(db):
    user = UserFactory()

    segment = save_segment(_new("mqls"), user=user)

    version = RuleVersion.objects.get(segment=segment)
    assert (version.old_rule, version.new_rule, version.changed_by) == (None, MQL, user)


def test_a_rule_edit_records_who_changed_what(db):
    segment = save_segment(_new("mqls"))
    editor = UserFactory()

    segment.rule = SCORED
    save_segment(segment, user=editor)

    latest = RuleVersion.objects.filter(segment=segment).latest("id")
    assert (latest.old_rule, latest.new_rule, latest.changed_by) == (MQL, SCORED, editor)


def test_saving_without_a_rule_change_records_no_version(db):
    segment = save_segment(_new("mqls"))

    segment.description = "MQLs for the sales team"
    save_segment(segment)

    assert RuleVersion.objects.filter(segment=segment).count() == 1


def test_a_rule_segment_needs_a_rule(db):
    assert _errors(_new("empty", rule=None))["rule"] == ["A dynamic (rule) segment needs a rule."]


def test_a_static_segment_refuses_a_rule_and_a_parent(db):
    parent = save_segment(_new("parent"))

    errors = _errors(_new("hand-picked", kind="static", rule=MQL, parent=parent))

    assert "A static segment has no rule" in errors["rule"][0]
    assert "cannot have a parent" in errors["parent"][0]


def test_only_suppressions_can_be_global(db):
    assert _errors(_new("global-dynamic", is_global=True))["is_global"] == ["Only suppression segments can be global."]
    assert save_segment(_new("competitors", kind="suppression", is_global=True)).is_global


def test_rule_errors_name_their_json_path(db):
    rule = {"all": [MQL, {"field": "lead_score", "op": "contains", "value": 3}]}

    errors = _errors(_new("broken", rule=rule))

    assert any(message.startswith("all[1].op") for message in errors["rule"]), errors


def test_an_unknown_in_segment_slug_is_refused(db):
    errors = _errors(_new("reader", rule={"in_segment": "nowhere"}))

    assert any("nowhere" in message for message in errors["rule"]), errors


def test_a_parent_cycle_is_refused_and_spelled_out(db):
    a = save_segment(_new("a"))
    b = save_segment(_new("b", parent=a))
    c = save_segment(_new("c", parent=b))

    a.parent = c
    errors = _errors(a)

    assert "a -> c -> b -> a" in errors[NON_FIELD_ERRORS][0]


def test_a_cycle_through_in_segment_references_is_refused(db):
    a = save_segment(_new("a"))
    save_segment(_new("b", rule={"in_segment": "a"}))

    a.rule = {"all": [MQL, {"not": {"in_segment": "b"}}]}
    errors = _errors(a)

    assert "a -> b -> a" in errors[NON_FIELD_ERRORS][0]


def test_a_segment_reading_itself_is_a_cycle(db):
    errors = _errors(_new("selfish", rule={"in_segment": "selfish"}))

    assert "selfish -> selfish" in errors[NON_FIELD_ERRORS][0]


def test_a_diamond_is_not_a_cycle(db):
    top = save_segment(_new("top"))
    left = save_segment(_new("left", parent=top))
    right = save_segment(_new("right", rule={"all": [SCORED, {"in_segment": "top"}]}))

    bottom = save_segment(_new("bottom", parent=left, rule={"all": [MQL, {"in_segment": "right"}]}))

    assert bottom.parent == left
    assert set(bottom.references.all()) == {right}


def test_references_follow_the_rule(db):
    a, b = save_segment(_new("a")), save_segment(_new("b"))
    reader = save_segment(_new("reader", rule={"any": [{"in_segment": "a"}, {"in_segment": "b"}]}))

    reader.rule = {"in_segment": "b"}
    save_segment(reader)

    assert list(SegmentReference.objects.values_list("from_segment", "to_segment")) == [(reader.pk, b.pk)]
    assert a.pk


def test_delete_is_refused_while_children_or_readers_exist(db):
    base = save_segment(_new("base", name="Base"))
    save_segment(_new("child", name="Child", parent=base))
    save_segment(_new("reader", name="Reader", rule={"in_segment": "base"}))

    with pytest.raises(SegmentInUse) as caught:
        delete_segment(base)

    assert caught.value.dependants == [
        "child segment Child (child)",
        "segment Reader (reader) reads it with in_segment",
    ]
    assert "Base" in caught.value.messages[0]
    assert Segment.objects.filter(slug="base").exists()


def test_delete_goes_through_once_nothing_depends_on_the_segment(db):
    base = save_segment(_new("base"))
    reader = save_segment(_new("reader", rule={"in_segment": "base"}))

    delete_segment(reader)
    delete_segment(base)

    assert not Segment.objects.exists()


def test_saving_queues_a_refresh_after_commit(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        segment = save_segment(_new("mqls"))

    queued = [(task.task["func"], task.task["args"]) for task in OrmQ.objects.all()]
    assert queued == [("segments.tasks.refresh_segment_task", (segment.pk,))]


def test_a_factory_segment_is_still_saved_through_the_checks(db):
    segment = SegmentFactory(slug="made-by-factory")
    segment.rule = {"field": "nope", "op": "eq", "value": 1}

    assert "rule" in _errors(segment)


def test_a_slug_that_rules_read_cannot_be_renamed(db):
    base = save_segment(_new("base"))
    save_segment(_new("reader", rule={"in_segment": "base"}))

    base.slug = "renamed"
    errors = _errors(base)

    assert errors["slug"] == ["The rules of reader read this segment as 'base'; change them first."]


def test_a_segment_cannot_turn_static(db):
    segment = save_segment(_new("mqls"))

    segment.kind, segment.rule = "static", None

    assert "cannot switch between static and rule-based" in _errors(segment)["kind"][0]
