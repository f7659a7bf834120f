import pytest
from django.core.exceptions import ValidationError
from django_q.models import Schedule

from activation.audience import audience
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, SegmentFactory

pytestmark = pytest.mark.django_db


def activation_schedules():
    # Other apps keep schedules of their own (e.g. automations every minute): look at ours only.
    return Schedule.objects.filter(func="activation.tasks.run_activation")


def _members(segment, *contacts):
    Membership.objects.bulk_create(Membership(segment=segment, contact=c) for c in contacts)


def test_audience_drops_suppressed_unreachable_and_global_suppressions():
    # given
    segment = SegmentFactory()
    extra = SegmentFactory(kind="suppression")
    global_one = SegmentFactory(kind="suppression", is_global=True)
    paused_global = SegmentFactory(kind="suppression", is_global=True, status="paused")
    archived_global = SegmentFactory(kind="suppression", is_global=True, status="archived")
    keep, in_extra, in_global, in_paused, dnc, bounced, unsub, in_archived = ContactFactory.create_batch(8)
    dnc.do_not_contact = True
    dnc.save()
    bounced.email_status = "bounced"
    bounced.save()
    unsub.email_status = "unsubscribed"
    unsub.save()
    _members(segment, keep, in_extra, in_global, in_paused, dnc, bounced, unsub, in_archived)
    _members(extra, in_extra)
    _members(global_one, in_global)
    _members(paused_global, in_paused)
    _members(archived_global, in_archived)
    ContactFactory()  # not a member at all
    activation = ActivationFactory(segment=segment)
    activation.suppression_segments.add(extra)

    # when
    ids = set(audience(activation).values_list("pk", flat=True))

    # then
    assert ids == {keep.pk, in_archived.pk}


def test_audience_is_one_query(django_assert_num_queries):
    activation = ActivationFactory()
    _members(activation.segment, *ContactFactory.create_batch(3))

    with django_assert_num_queries(1):
        assert len(list(audience(activation))) == 3


def test_an_activation_on_an_archived_segment_is_refused():
    activation = ActivationFactory.build(segment=SegmentFactory(status="archived", name="Old promo"))

    with pytest.raises(ValidationError) as exc:
        activation.full_clean()

    assert exc.value.message_dict["segment"] == [
        "Segment 'Old promo' is archived; activate it or choose another segment."
    ]


def test_a_scheduled_activation_keeps_its_schedule_in_step():
    # given
    activation = ActivationFactory(schedule_minutes=30)
    schedule = activation_schedules().get()
    assert (schedule.func, schedule.args, schedule.minutes) == (
        "activation.tasks.run_activation",
        repr(activation.pk),
        30,
    )
    assert activation.schedule == schedule

    # when the interval changes
    activation.schedule_minutes = 60
    activation.save()

    # then the same row follows
    assert activation_schedules().get().minutes == 60
    assert activation_schedules().get().pk == schedule.pk

    # when disabled, the schedule goes; enabled again, it comes back
    activation.enabled = False
    activation.save()
    assert not activation_schedules().exists()
    activation.enabled = True
    activation.save()
    assert activation_schedules().count() == 1

    # when deleted, so is its schedule
    activation.delete()
    assert not activation_schedules().exists()


def test_a_manual_activation_has_no_schedule():
    ActivationFactory(schedule_minutes=None)

    assert not activation_schedules().exists()
