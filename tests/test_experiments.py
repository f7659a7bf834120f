"""Experiments on campaigns: design checks, assignment, exposures (send and personalization), outcomes."""

import threading
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone
from scipy import stats

from activation import experiments
from activation.experiment_models import Arm, Experiment, ExperimentStatus, Exposure, Metric
from activation.experiment_results import experiment_results, read_cells
from activation.experiments import (
    InvalidDesign,
    arm_of,
    bucket_of,
    clone,
    record_send,
    start,
    with_arm,
)
from activation.personalization import personalize
from contacts.models import Contact
from segments.models import Membership, Segment, SegmentStatus
from tests.factories import (
    ActivityFactory,
    CampaignFactory,
    CampaignVariantFactory,
    ContactFactory,
    DealFactory,
    SegmentFactory,
)


def make_experiment(*, targets=2, start_it=True, **fields):
    campaign = CampaignFactory(slug="spring-launch")
    segments = [SegmentFactory(slug=f"slice-{n}", name=f"Slice {n}") for n in range(targets)]
    for n, segment in enumerate(segments):
        CampaignVariantFactory(campaign=campaign, segment=segment, priority=n + 1)
    experiment = Experiment.objects.create(campaign=campaign, name="Spring test", **fields)
    experiment.target_segments.set(segments)
    if start_it:
        start(experiment)
    return experiment, segments


def join(segment, contacts):
    Membership.objects.bulk_create([Membership(segment=segment, contact=c) for c in contacts])


# --- assignment -----------------------------------------------------------------------------------


def test_assignment_is_balanced_on_100k_contacts():
    counts = Counter(
        arm_of(Experiment(salt="a1b2c3", specific_percent=50, generic_percent=30, holdout_percent=20), i)
        for i in range(1, 100_001)
    )

    observed = [counts[Arm.SPECIFIC], counts[Arm.GENERIC], counts[Arm.HOLDOUT]]
    assert stats.chisquare(observed, [50_000, 30_000, 20_000]).pvalue > 0.01


def test_assignments_of_two_experiments_are_independent():
    one, two = "first-salt", "second-salt"
    table = Counter((bucket_of(one, i) < 5000, bucket_of(two, i) < 5000) for i in range(1, 50_001))

    cells = [[table[(True, True)], table[(True, False)]], [table[(False, True)], table[(False, False)]]]
    assert stats.chi2_contingency(cells).pvalue > 0.01


def test_the_same_contact_gets_the_same_bucket_whatever_else_is_computed():
    first = [bucket_of("salt", i) for i in (7, 12345, 2**40 + 3)]
    [bucket_of("other", i) for i in range(100)]

    assert [bucket_of("salt", i) for i in (7, 12345, 2**40 + 3)] == first


@pytest.mark.django_db
def test_sql_assignment_agrees_with_python():
    experiment, _ = make_experiment(specific_percent=40, generic_percent=40, holdout_percent=20)
    ContactFactory.create_batch(300)

    in_sql = dict(with_arm(Contact.objects.all(), experiment).values_list("pk", "arm"))

    assert in_sql == {pk: arm_of(experiment, pk) for pk in Contact.objects.values_list("pk", flat=True)}
    assert set(in_sql.values()) == {Arm.SPECIFIC, Arm.GENERIC, Arm.HOLDOUT}


# --- design checks --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_split_not_adding_up_to_100_is_refused_naming_the_field():
    experiment, _ = make_experiment(start_it=False)
    experiment.holdout_percent = 10

    with pytest.raises(ValidationError) as error:
        experiment.full_clean()

    assert "add up to 100%" in str(error.value.message_dict["holdout_percent"])


@pytest.mark.django_db
def test_a_campaign_without_variants_is_refused():
    experiment = Experiment(campaign=CampaignFactory(name="Bare"), name="x")

    with pytest.raises(ValidationError) as error:
        experiment.full_clean()

    assert "'Bare' has no segment variants" in error.value.message_dict["campaign"][0]


@pytest.mark.django_db
def test_a_window_of_zero_days_is_refused():
    experiment, _ = make_experiment(start_it=False)
    experiment.window_days = 0

    with pytest.raises(ValidationError) as error:
        experiment.full_clean()

    assert "window_days" in error.value.message_dict


@pytest.mark.django_db
def test_the_split_cannot_change_after_the_first_exposure():
    experiment, (segment, _) = make_experiment()
    join(segment, [ContactFactory()])
    record_send(experiment)
    experiment.specific_percent, experiment.generic_percent = 70, 30

    with pytest.raises(ValidationError) as error:
        experiment.full_clean()

    assert "Clone the experiment" in error.value.message_dict["specific_percent"][0]


@pytest.mark.django_db
def test_a_clone_is_a_draft_with_its_own_assignment_and_no_exposures():
    experiment, (segment, other) = make_experiment(holdout_percent=10, specific_percent=45, generic_percent=45)
    join(segment, [ContactFactory()])
    record_send(experiment)

    copy = clone(experiment)

    assert (copy.status, copy.name, copy.split) == ("draft", "Spring test (copy)", experiment.split)
    assert set(copy.target_segments.all()) == {segment, other}
    assert copy.salt != experiment.salt
    assert not copy.exposures.exists()


@pytest.mark.django_db
def test_a_target_segment_without_a_variant_cannot_start():
    experiment, _ = make_experiment(start_it=False)
    experiment.target_segments.add(SegmentFactory(name="No content"))

    with pytest.raises(InvalidDesign) as error:
        start(experiment)

    assert error.value.field == "target_segments"
    assert "'No content' has no variant" in str(error.value)


@pytest.mark.django_db
def test_two_experiments_cannot_run_on_one_campaign():
    experiment, segments = make_experiment()
    second = Experiment.objects.create(campaign=experiment.campaign, name="Second")
    second.target_segments.set(segments)

    with pytest.raises(InvalidDesign) as error:
        start(second)

    assert "'Spring test' is already running" in str(error.value)


# --- exposures ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_send_exposes_eligible_members_once_in_their_best_slice(django_assert_num_queries):
    experiment, (first, second) = make_experiment()
    both, only_second = ContactFactory(), ContactFactory()
    bounced, no_contact = ContactFactory(email_status="bounced"), ContactFactory(do_not_contact=True)
    join(first, [both, bounced, no_contact])
    join(second, [both, only_second])
    suppression = SegmentFactory(kind="suppression", is_global=True)
    suppressed = ContactFactory()
    join(second, [suppressed])
    join(suppression, [suppressed])

    with django_assert_num_queries(3):  # savepoint, the INSERT ... SELECT, release
        sent = record_send(experiment)

    assert sent == 2
    rows = {e.contact_id: (e.segment_id, e.arm) for e in Exposure.objects.all()}
    assert rows == {
        both.pk: (first.pk, arm_of(experiment, both.pk)),
        only_second.pk: (second.pk, arm_of(experiment, only_second.pk)),
    }
    assert record_send(experiment) == 0


@pytest.mark.django_db
def test_experiment_suppression_segments_keep_members_out():
    experiment, (segment, _) = make_experiment()
    kept_out, sent = ContactFactory(), ContactFactory()
    join(segment, [kept_out, sent])
    own = SegmentFactory(kind="suppression")
    join(own, [kept_out])
    experiment.suppression_segments.add(own)

    record_send(experiment)

    assert list(Exposure.objects.values_list("contact_id", flat=True)) == [sent.pk]


def contact_in_arm(experiment, arm):
    while True:
        contact = ContactFactory()
        if arm_of(experiment, contact.pk) == arm:
            return contact


@pytest.mark.django_db
@pytest.mark.parametrize("arm", [Arm.SPECIFIC, Arm.GENERIC, Arm.HOLDOUT])
def test_personalization_serves_the_arm_and_records_the_exposure_once(arm):
    experiment, (segment, _) = make_experiment(specific_percent=40, generic_percent=40, holdout_percent=20)
    contact = contact_in_arm(experiment, arm)
    join(segment, [contact])

    first = personalize(contact_id=contact.pk)["campaigns"]
    again = personalize(contact_id=contact.pk)["campaigns"]

    assert first == again
    if arm == Arm.HOLDOUT:
        assert first == []
    else:
        [content] = first
        assert content["experiment"] == {"id": experiment.pk, "arm": arm}
        assert content["subject"] == ("Subject for slice-0" if arm == Arm.SPECIFIC else "Our default subject")
    assert list(Exposure.objects.values_list("contact_id", "arm", "segment_id")) == [(contact.pk, arm, segment.pk)]


@pytest.mark.django_db
def test_personalization_of_a_contact_outside_every_experiment_costs_no_extra_query(django_assert_num_queries):
    make_experiment()
    outsider = ContactFactory()

    with django_assert_num_queries(3):  # contact, memberships, campaigns (no segments: no variants to read)
        [content] = personalize(contact_id=outsider.pk)["campaigns"]

    assert content["experiment"] is None
    assert not Exposure.objects.exists()


@pytest.mark.django_db
def test_personalization_reuses_the_experiments_statement_with_each_contacts_segments(monkeypatch):
    # given the statement that finds a contact's experiments compiled by an earlier request
    _experiment, (first, second) = make_experiment()
    in_first, in_second, in_both = ContactFactory(), ContactFactory(), ContactFactory()
    join(first, [in_first, in_both])
    join(second, [in_second, in_both])
    personalize(contact_id=in_first.pk)
    compiled = []
    compile_statement = experiments._experiments_of_contact
    monkeypatch.setattr(experiments, "_experiments_of_contact", lambda: compiled.append(1) or compile_statement())

    # when contacts in other segments are served
    personalize(contact_id=in_second.pk)
    personalize(contact_id=in_both.pk)

    # then nothing was compiled again, and each was exposed in its own best slice
    assert compiled == []
    assert dict(Exposure.objects.values_list("contact_id", "segment_id")) == {
        in_first.pk: first.pk,
        in_second.pk: second.pk,
        in_both.pk: first.pk,
    }


@pytest.mark.django_db
def test_personalization_exposes_nobody_in_an_archived_target_segment():
    # given the best slice's segment archived, with a contact only in it and one also in the other
    _experiment, (first, second) = make_experiment()
    only_archived, in_both = ContactFactory(), ContactFactory()
    join(first, [only_archived, in_both])
    join(second, [in_both])
    Segment.objects.filter(pk=first.pk).update(status=SegmentStatus.ARCHIVED)

    # when both are served
    personalize(contact_id=only_archived.pk)
    personalize(contact_id=in_both.pk)

    # then only the second is exposed, in the slice left
    assert dict(Exposure.objects.values_list("contact_id", "segment_id")) == {in_both.pk: second.pk}


@pytest.mark.django_db
def test_a_stopped_experiment_serves_no_arm():
    experiment, (segment, _) = make_experiment()
    contact = contact_in_arm(experiment, Arm.GENERIC)
    join(segment, [contact])
    experiment.status = ExperimentStatus.STOPPED
    experiment.save()

    [content] = personalize(contact_id=contact.pk)["campaigns"]

    assert content["experiment"] is None
    assert content["subject"] == "Subject for slice-0"


# --- outcomes -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_only_outcomes_after_exposure_and_inside_the_window_count():
    experiment, (segment, _) = make_experiment(window_days=14, secondary_metrics=["revenue", "deal_won"])
    exposed_at = timezone.now() - timedelta(days=20)
    now = timezone.now()
    contacts = ContactFactory.create_batch(5)
    join(segment, contacts)
    record_send(experiment, now=exposed_at)
    inside, before, after_window, other_campaign, future = contacts
    click = {"kind": "email_click", "campaign": "Spring-Launch"}
    ActivityFactory(contact=inside, occurred_at=exposed_at + timedelta(days=3), **click)
    ActivityFactory(
        contact=inside, kind="purchase", value=Decimal("120.50"), occurred_at=exposed_at + timedelta(days=1)
    )
    DealFactory(contact=inside, stage="won", amount=1000, closed_at=exposed_at + timedelta(days=13))
    ActivityFactory(contact=before, occurred_at=exposed_at - timedelta(minutes=1), **click)
    DealFactory(contact=before, stage="won", amount=500, closed_at=exposed_at - timedelta(days=1))
    ActivityFactory(contact=after_window, occurred_at=exposed_at + timedelta(days=14), **click)
    ActivityFactory(contact=other_campaign, kind="email_click", campaign="autumn", occurred_at=exposed_at)

    cells = read_cells(experiment, now=now)
    ActivityFactory(contact=future, occurred_at=now + timedelta(hours=1), **click)

    clicks = sum(cell.counts[Metric.CLICK] for cell in cells.values())
    won = sum(cell.counts[Metric.DEAL_WON] for cell in cells.values())
    revenue = sum(cell.moments[Metric.REVENUE].total for cell in cells.values())
    assert (clicks, won, revenue) == (1, 1, Decimal("1120.50"))
    assert sum(cell.matured for cell in cells.values()) == 5
    assert sum(cell.counts[Metric.CLICK] for cell in read_cells(experiment, now=now).values()) == 1


@pytest.mark.django_db
def test_results_read_everything_in_a_fixed_number_of_queries(django_assert_max_num_queries):
    experiment, segments = make_experiment(targets=3, secondary_metrics=["revenue", "purchase"])
    for segment in segments:
        join(segment, ContactFactory.create_batch(6))
    record_send(experiment)

    # campaign, target ids, segments; in a savepoint (with jit off on PostgreSQL) the sizes and
    # one statement per metric (3), whatever the number of slices and contacts
    with django_assert_max_num_queries(10):
        results = experiment_results(experiment)

    assert [s.name for s in results.slices] == ["All target segments", "Slice 0", "Slice 1", "Slice 2"]
    assert sum(row.exposed for row in results.overall.metrics[Metric.CLICK]) == 18
    assert results.decision.startswith("Provisional")


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_record_one_exposure():
    # given a contact in a running experiment and eight requests arriving together
    experiment, (segment, _) = make_experiment()
    contact = ContactFactory()
    join(segment, [contact])
    barrier, served, errors = threading.Barrier(8), [], []

    def request() -> None:
        try:
            barrier.wait(timeout=30)
            [content] = personalize(contact_id=contact.pk)["campaigns"]
            served.append(content["experiment"]["arm"])
        except Exception as error:  # reported below: a thread's exception would be lost
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then every request served the same arm and one exposure was recorded
    assert errors == []
    assert served == [arm_of(experiment, contact.pk)] * 8
    assert Exposure.objects.filter(experiment=experiment).count() == 1


@pytest.mark.django_db
def test_personalization_keeps_suppressed_contacts_out_in_two_extra_queries(django_assert_num_queries):
    experiment, (segment, _) = make_experiment()
    kept_out, served = ContactFactory(), ContactFactory()
    join(segment, [kept_out, served])
    own = SegmentFactory(kind="suppression")
    join(own, [kept_out])
    experiment.suppression_segments.add(own)

    with django_assert_num_queries(6):  # contact, memberships, its experiments, the exposure, campaigns, variants
        [content] = personalize(contact_id=served.pk)["campaigns"]
    [other] = personalize(contact_id=kept_out.pk)["campaigns"]

    assert content["experiment"] == {"id": experiment.pk, "arm": arm_of(experiment, served.pk)}
    assert (other["experiment"], other["subject"]) == (None, "Subject for slice-0")
    assert list(Exposure.objects.values_list("contact_id", flat=True)) == [served.pk]
