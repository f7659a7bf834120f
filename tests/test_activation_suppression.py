"""Property: whatever the memberships and suppressions, no export ever carries a contact it must not."""

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from activation.exports import execute_run, start_run
from contacts.models import Contact
from segments.models import Membership
from tests.factories import ActivationFactory, ContactFactory, DestinationFactory, SegmentFactory

pytestmark = pytest.mark.django_db

POOL = 10

person = st.fixed_dictionaries(
    {
        "member": st.booleans(),
        "in_extra": st.booleans(),
        "in_global": st.booleans(),
        "in_paused_global": st.booleans(),
        "in_other_suppression": st.booleans(),  # a suppression segment this activation does not use
        "do_not_contact": st.booleans(),
        "email_status": st.sampled_from(["valid", "valid", "bounced", "unsubscribed"]),
    }
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def world(httpserver, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path
    httpserver.expect_request("/hook").respond_with_data("ok")
    contacts = [
        ContactFactory(
            first_name=f"Person{n}", street_address=f"{n} Main St", postal_code="94105", city="San Francisco"
        )
        for n in range(POOL)
    ]
    segment = SegmentFactory()
    extra = SegmentFactory(kind="suppression")
    global_one = SegmentFactory(kind="suppression", is_global=True)
    paused_global = SegmentFactory(kind="suppression", is_global=True, status="paused")
    other = SegmentFactory(kind="suppression")
    destinations = [
        DestinationFactory(kind="csv", csv_columns=["email"]),
        DestinationFactory(kind="google_customer_match"),
        DestinationFactory(kind="meta_custom_audience"),
        DestinationFactory(kind="linkedin_matched_audience"),
        DestinationFactory(kind="direct_mail"),
        DestinationFactory(kind="webhook", url=httpserver.url_for("/hook"), secret="k", is_internal=True, batch_size=3),
    ]
    activations = []
    for destination in destinations:
        activation = ActivationFactory(segment=segment, destination=destination)
        activation.suppression_segments.add(extra)
        activations.append(activation)
    segments = {
        "member": segment,
        "in_extra": extra,
        "in_global": global_one,
        "in_paused_global": paused_global,
        "in_other_suppression": other,
    }
    return {"contacts": contacts, "segments": segments, "activations": activations, "media": tmp_path}


def _apply(world, people) -> set[int]:
    """Store one drawn world; return the ids an export may contain."""
    Membership.objects.all().delete()
    allowed = set()
    memberships = []
    for contact, drawn in zip(world["contacts"], people, strict=True):
        Contact.objects.filter(pk=contact.pk).update(
            do_not_contact=drawn["do_not_contact"], email_status=drawn["email_status"]
        )
        memberships += [
            Membership(segment=segment, contact=contact) for key, segment in world["segments"].items() if drawn[key]
        ]
        suppressed = drawn["in_extra"] or drawn["in_global"] or drawn["in_paused_global"]
        unreachable = drawn["do_not_contact"] or drawn["email_status"] != "valid"
        if drawn["member"] and not suppressed and not unreachable:
            allowed.add(contact.pk)
    Membership.objects.bulk_create(memberships)
    return allowed


def _exported_ids(world, run, httpserver) -> set[int]:
    contacts = world["contacts"]
    kind = run.activation.destination.kind
    if kind == "webhook":
        bodies = [json.loads(request.get_data()) for request, _ in httpserver.log]
        return {member["id"] for body in bodies if body["action"] == "add" for member in body["members"]}
    rows = (Path(world["media"]) / run.file_path).read_text().splitlines()[1:]
    first_cells = {row.split(",")[0] for row in rows}
    if kind == "direct_mail":
        by_key = {c.first_name: c.pk for c in contacts}  # first cell is the first name: make them unique
    elif kind == "csv" or (kind == "linkedin_matched_audience" and run.activation.destination.linkedin_plain_email):
        by_key = {c.email: c.pk for c in contacts}
    else:
        by_key = {sha(c.email): c.pk for c in contacts}
    assert first_cells <= set(by_key), f"{kind} file has rows for unknown contacts"
    return {by_key[cell] for cell in first_cells}


@hypothesis_settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(person, min_size=POOL, max_size=POOL))
def test_no_suppressed_or_unreachable_contact_ever_leaves(world, people, httpserver):
    allowed = _apply(world, people)

    for activation in world["activations"]:
        httpserver.clear_log()
        run = execute_run(start_run(activation).pk)

        assert run.status == "succeeded", run.error
        assert _exported_ids(world, run, httpserver) == allowed, activation.destination.kind
        assert run.exported_count == len(allowed)
