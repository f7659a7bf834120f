"""Who is in an experiment, which arm each contact gets, and the record of each first exposure.

Assignment is a keyed hash of the experiment's salt and the contact id, the same in Python (one
contact, the personalization endpoint) and in SQL (a whole send, one statement), so no table of
assignments is needed and a contact's arm does not depend on who else is a member, on the process
or on the order of requests. The salt is turned into three keys by SHA-256; the contact id is then
mixed modulo the prime 2^31 - 1 by an affine step and a squaring step, each product below 2^62
so it fits the 64-bit integers of both databases. The result modulo 10,000 is the contact's bucket;
the arms take consecutive ranges of buckets in proportion to the split.

Eligible: a member of at least one target segment, reachable (valid e-mail, not do-not-contact),
and not a member of the experiment's suppression segments nor of any global suppression segment
that is not archived (as for activations). The slice a contact counts in is its target segment
whose campaign variant has the best (lowest) priority; the segment-specific arm is served that
variant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    Case,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.utils import timezone

from activation.experiment_models import Arm, Experiment, ExperimentStatus, Exposure
from activation.models import CampaignVariant
from contacts.models import Contact, EmailStatus
from segments.models import SUPPRESSION_KINDS, Membership, Segment, SegmentStatus
from segments.targets import Slot, kept_statement

PRIME = 2_147_483_647  # 2^31 - 1
BUCKETS = 10_000  # a split is in whole percent: 100 buckets per percent


class ExperimentNotRunning(Exception):
    pass


class InvalidDesign(Exception):
    """An experiment that cannot start, with the field to fix."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def target_problems(campaign_id: int, segments: Collection[Segment]) -> str:
    """Why these target segments cannot be tested on the campaign ("" when they can)."""
    if not segments:
        return "Choose at least one target segment: each is a slice of the results."
    with_variant = set(
        CampaignVariant.objects.filter(campaign_id=campaign_id, segment__in=segments).values_list(
            "segment_id", flat=True
        )
    )
    missing = sorted(s.name for s in segments if s.pk not in with_variant)
    if missing:
        return (
            f"{', '.join(repr(name) for name in missing)} has no variant in this campaign: segment-specific "
            "content needs one. Add the variant or leave the segment out."
        )
    kinds = sorted(s.name for s in segments if s.is_suppression or s.status == SegmentStatus.ARCHIVED)
    if kinds:
        return f"{', '.join(repr(name) for name in kinds)} is a suppression or archived segment; choose audiences."
    return ""


def start(experiment: Experiment, *, now: datetime | None = None) -> None:
    """Draft or stopped -> running, after checking it can run; refused with the field to fix."""
    problem = target_problems(experiment.campaign_id, list(experiment.target_segments.all()))
    if problem:
        raise InvalidDesign(problem, field="target_segments")
    if not experiment.campaign.active:
        raise InvalidDesign(f"Campaign {experiment.campaign.name!r} is not active.", field="campaign")
    other = Experiment.objects.running().filter(campaign_id=experiment.campaign_id).exclude(pk=experiment.pk).first()
    if other is not None:
        raise InvalidDesign(
            f"{other.name!r} is already running on this campaign; stop it first (a contact sees one arm per campaign).",
            field="campaign",
        )
    updated = Experiment.objects.filter(pk=experiment.pk).exclude(status=ExperimentStatus.RUNNING)
    updated.update(status=ExperimentStatus.RUNNING, started_at=experiment.started_at or now or timezone.now())
    experiment.refresh_from_db()


def clone(experiment: Experiment) -> Experiment:
    """A draft copy to change the design of: same campaign, targets, suppressions and settings, a
    new salt (its own assignment), no exposures."""
    copy = Experiment.objects.create(
        campaign_id=experiment.campaign_id,
        name=f"{experiment.name} (copy)"[:200],
        specific_percent=experiment.specific_percent,
        generic_percent=experiment.generic_percent,
        holdout_percent=experiment.holdout_percent,
        metric=experiment.metric,
        secondary_metrics=list(experiment.secondary_metrics),
        window_days=experiment.window_days,
        baseline_rate=experiment.baseline_rate,
        minimum_effect=experiment.minimum_effect,
    )
    copy.target_segments.set(experiment.target_segments.all())
    copy.suppression_segments.set(experiment.suppression_segments.all())
    return copy


def stop(experiment: Experiment, *, now: datetime | None = None) -> None:
    Experiment.objects.filter(pk=experiment.pk, status=ExperimentStatus.RUNNING).update(
        status=ExperimentStatus.STOPPED, stopped_at=now or timezone.now()
    )
    experiment.refresh_from_db()


def hash_keys(salt: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(salt.encode()).digest()
    a = int.from_bytes(digest[0:8], "big") % (PRIME - 1) + 1  # never 0: the affine step must be a bijection
    b = int.from_bytes(digest[8:16], "big") % PRIME
    c = int.from_bytes(digest[16:24], "big") % PRIME
    return a, b, c


def bucket_of(salt: str, contact_id: int) -> int:
    a, b, c = hash_keys(salt)
    h = (a * (contact_id % PRIME) + b) % PRIME
    h = (h * h + c) % PRIME
    return h % BUCKETS


def arm_for_bucket(bucket: int, *, specific: int, generic: int) -> str:
    if bucket < specific * 100:
        return Arm.SPECIFIC
    if bucket < (specific + generic) * 100:
        return Arm.GENERIC
    return Arm.HOLDOUT


def arm_of(experiment: Experiment, contact_id: int) -> str:
    return arm_for_bucket(
        bucket_of(experiment.salt, contact_id),
        specific=experiment.specific_percent,
        generic=experiment.generic_percent,
    )


def bucket_expression(salt: str, column: str = "pk") -> ExpressionWrapper:
    """The same bucket as bucket_of(), in SQL over a contact id column.

    The `%` operator, not Mod(): SQLite's MOD() goes through floating point, exact only to 2^53.
    """
    a, b, c = hash_keys(salt)

    def big(expression) -> ExpressionWrapper:
        return ExpressionWrapper(expression, output_field=BigIntegerField())

    h = big((big(F(column) % PRIME) * a + b) % PRIME)
    h = big((h * h + c) % PRIME)
    return big(h % BUCKETS)


def with_arm(contacts: QuerySet[Contact], experiment: Experiment) -> QuerySet[Contact]:
    """`contacts` annotated with `bucket` and `arm`, computed in SQL as arm_of() computes them."""
    specific = experiment.specific_percent * 100
    generic = specific + experiment.generic_percent * 100
    return contacts.annotate(bucket=bucket_expression(experiment.salt)).annotate(
        arm=Case(
            When(bucket__lt=specific, then=Value(Arm.SPECIFIC)),
            When(bucket__lt=generic, then=Value(Arm.GENERIC)),
            default=Value(Arm.HOLDOUT),
        )
    )


def suppressing_segments(experiment: Experiment) -> QuerySet[Segment]:
    global_ones = Q(kind__in=SUPPRESSION_KINDS, is_global=True) & ~Q(status=SegmentStatus.ARCHIVED)
    return Segment.objects.filter(global_ones | Q(pk__in=experiment.suppression_segments.values("pk")))


def eligible(experiment: Experiment) -> QuerySet[Contact]:
    """Reachable members of a target segment who are in no suppressing segment (one statement)."""
    in_target = Membership.objects.filter(
        segment__in=experiment.target_segments.exclude(status=SegmentStatus.ARCHIVED), contact_id=OuterRef("pk")
    )
    suppressed = Membership.objects.filter(segment__in=suppressing_segments(experiment), contact_id=OuterRef("pk"))
    return Contact.objects.reachable().filter(Exists(in_target)).filter(~Exists(suppressed))


def slice_expression(experiment: Experiment) -> Subquery:
    """The contact's target segment whose variant has the best priority."""
    member = Membership.objects.filter(segment_id=OuterRef("segment_id"), contact_id=OuterRef(OuterRef("pk")))
    variants = CampaignVariant.objects.filter(
        campaign_id=experiment.campaign_id, segment__in=experiment.target_segments.all()
    ).filter(Exists(member))
    return Subquery(variants.order_by("priority").values("segment_id")[:1])


def record_send(experiment: Experiment, *, now: datetime | None = None) -> int:
    """Expose every eligible contact not exposed yet (a send of the campaign), in one INSERT ... SELECT.

    Returns how many were newly exposed. Contacts exposed before keep their first exposure.
    """
    if experiment.status != ExperimentStatus.RUNNING:
        raise ExperimentNotRunning(f"{experiment.name!r} is {experiment.get_status_display().lower()}, not running.")
    now = now or timezone.now()
    already = Exposure.objects.filter(experiment=experiment, contact_id=OuterRef("pk"))
    source = (
        with_arm(eligible(experiment).filter(~Exists(already)), experiment)
        .annotate(slice_id=slice_expression(experiment))
        .filter(slice_id__isnull=False)
        .annotate(cid=F("pk"))
        .values("cid", "arm", "slice_id")
    )
    sql, params = source.query.sql_with_params()
    table = connection.ops.quote_name(Exposure._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (experiment_id, contact_id, arm, segment_id, exposed_at) "
            f"SELECT %s, staged.cid, staged.arm, staged.slice_id, %s FROM ({sql}) staged "
            "WHERE true ON CONFLICT (experiment_id, contact_id) DO NOTHING",
            [experiment.pk, connection.ops.adapt_datetimefield_value(now), *params],
        )
        return cursor.rowcount


@dataclass(frozen=True)
class Assignment:
    experiment_id: int
    campaign_id: int
    arm: str
    segment_id: int  # the slice, whose variant the segment-specific arm is served


def running_targets() -> QuerySet:
    """(experiment, segment) rows of the running experiments of active campaigns; personalization
    marks the contact's memberships with Exists() over these so that a contact in no experiment
    costs no query of its own."""
    return Experiment.target_segments.through.objects.filter(
        experiment__status=ExperimentStatus.RUNNING, experiment__campaign__active=True
    )


def assign_contact(
    contact: Mapping[str, Any],
    segment_ids: Collection[int],
    *,
    tested: bool,
    globally_suppressed: bool,
    now: datetime | None = None,
) -> list[Assignment]:
    """The running experiments this contact is eligible for and its arm in each; first exposures recorded.

    `contact` has id, email_status and do_not_contact; `segment_ids` are every segment the contact
    is a member of that is not archived, suppression segments included; `tested` says whether one of them is a target
    of a running experiment (running_targets()) and `globally_suppressed` whether one is a global
    suppression that is not archived. No query unless `tested`; then two: the experiments the
    contact is a target of and not suppressed from, and the insert of first exposures. Both are
    SQL kept per process (this runs on every page a personalised site serves, and building the
    first through the ORM cost more than running both).
    """
    if not tested or globally_suppressed or contact["email_status"] != EmailStatus.VALID:
        return []
    if contact["do_not_contact"]:
        return []
    sql, params = kept_statement(
        ("experiments_of_contact", connection.vendor), _experiments_of_contact, segment_ids=_id_list(segment_ids)
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    best: dict[int, tuple] = {}
    for row in rows:
        if row[0] not in best or row[2] < best[row[0]][2]:
            best[row[0]] = row
    assignments = [
        Assignment(
            experiment_id=experiment_id,
            campaign_id=campaign_id,
            arm=arm_for_bucket(bucket_of(salt, contact["id"]), specific=specific, generic=generic),
            segment_id=segment_id,
        )
        for experiment_id, segment_id, _priority, campaign_id, salt, specific, generic in best.values()
    ]
    if assignments:
        _record_exposures(contact["id"], assignments, at=now or timezone.now())
    return assignments


_SEGMENT_IDS = Slot("segment_ids")


def _experiments_of_contact() -> tuple[str, list]:
    """(experiment, segment, variant priority, campaign, salt, specific %, generic %) of each running
    experiment targeting one of the contact's segments (the Slot) and suppressing none of them."""
    in_segments = (
        RawSQL("SELECT unnest(%s::bigint[])", [_SEGMENT_IDS])
        if connection.vendor == "postgresql"
        else RawSQL("SELECT value FROM json_each(%s)", [_SEGMENT_IDS])
    )
    # (one variant per campaign and segment: no order needed, nor the join to campaigns it took)
    variant_priority = (
        CampaignVariant.objects.filter(
            campaign_id=OuterRef("experiment__campaign_id"), segment_id=OuterRef("segment_id")
        )
        .order_by()
        .values("priority")[:1]
    )
    # The experiment's own suppression lists, read in the same statement (one round trip less).
    suppressions = Experiment.suppression_segments.through.objects.filter(
        experiment_id=OuterRef("experiment_id"), segment_id__in=in_segments
    )
    rows = (
        running_targets()
        # (The segments are not archived: the caller says so. Checking again took a join to the
        # segments, which doubled the planning of this statement, most of its cost: 0.43 -> 0.80 ms
        # p50 of 300, against 0.07-0.08 ms to run it.)
        .filter(segment_id__in=in_segments)
        .annotate(priority=Subquery(variant_priority))
        .filter(priority__isnull=False)
        .exclude(Exists(suppressions))
        .values_list(
            "experiment_id",
            "segment_id",
            "priority",
            "experiment__campaign_id",
            "experiment__salt",
            "experiment__specific_percent",
            "experiment__generic_percent",
        )
    )
    sql, params = rows.query.sql_with_params()
    return sql, list(params)


def _id_list(ids: Collection[int]) -> object:
    """Ids as one parameter: an array on PostgreSQL, JSON text on SQLite."""
    return list(ids) if connection.vendor == "postgresql" else json.dumps(list(ids))


def _record_exposures(contact_id: int, assignments: list[Assignment], *, at: datetime) -> None:
    """One INSERT of the first exposures; a row already there (an earlier visit, or a concurrent
    request that got there first: exposure_once_per_contact) is left as it is."""
    table = connection.ops.quote_name(Exposure._meta.db_table)
    stamp = connection.ops.adapt_datetimefield_value(at)
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(assignments))
    params = [value for a in assignments for value in (a.experiment_id, contact_id, a.arm, a.segment_id, stamp)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (experiment_id, contact_id, arm, segment_id, exposed_at) VALUES {values} "
            "ON CONFLICT (experiment_id, contact_id) DO NOTHING",
            params,
        )
