"""Who should be in a segment: its rule's matches within its parent's members, as one queryset
(`target_contacts`), or as the SQL of one compiled once per process: of the whole segment
(`target_sql`, the full refresh) or among the contacts of a refresh of some contacts
(`scoped_target_sql`, refresh_contacts).

Compiling a rule through the ORM costs about a millisecond of Python, the whole of a small
segment's refresh statement. So a segment's target SQL is kept per process and reused while
everything it was compiled from (rule, parent, thresholds, field registry, the segments it reads)
stays the same. Only the parameters that depend on `now` change between calls (event windows,
relative dates): they are found by compiling at two instants a day and a bit apart and
comparing, and are shifted to each call's `now`; a rule whose parameters do not shift that way is
compiled on every call instead.

Other statements on a hot path that the ORM would otherwise build on every call keep their SQL
in the same cache through `kept_statement`, their per-call values passed as parameters (Slot).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import Expression, Q, QuerySet
from django.utils import timezone

from contacts.models import Contact
from segments.membership import scoped_contact_ids
from segments.models import Membership, Segment, SegmentKind, SuppressionHold
from segments.rules.compiler import Thresholds, matching_contacts
from segments.rules.registry import Field
from segments.rules.validation import referenced_slugs

# Compiled statements kept per process (a few per active segment at most).
CACHE_SIZE = 1024
# The second instant a rule is compiled at, to tell `now`-dependent parameters from constants.
_PROBE_SHIFT = timedelta(days=1, hours=1, minutes=1, seconds=1, microseconds=1)
# What the parameter makers of a kept statement, all constants, are called with.
_NO_TIME = datetime(2000, 1, 1, tzinfo=UTC)

Param = Callable[[datetime], object]
Compile = Callable[[datetime], tuple[str, list]]

_cache: OrderedDict[tuple, tuple[str, list[Param]] | None] = OrderedDict()
_cache_lock = threading.Lock()  # web servers may refresh from several threads


def target_contacts(
    segment: Segment,
    *,
    now: datetime,
    fields: dict[str, Field] | None = None,
    contact_ids: Collection[int] | Expression | None = None,
    thresholds: Thresholds | None = None,
) -> QuerySet[Contact]:
    """Who should be a member at `now`: the rule's matches, within the parent's members.

    `thresholds`: top/bottom_percent thresholds to use (see rules/thresholds.py); without them
    they are measured live. Raises InvalidRule (naming JSON paths) when the rule no longer
    validates, e.g. after a property it uses was deleted.
    """
    target = matching_contacts(
        segment.rule, now=now, fields=fields, contact_ids=contact_ids, thresholds=thresholds, also=_held(segment)
    )
    if segment.parent_id is not None:
        target = target.filter(pk__in=Membership.objects.filter(segment_id=segment.parent_id).values("contact_id"))
    return target


def _held(segment: Segment) -> Q | None:
    """A suppression segment also keeps the contacts a merge holds in it (segments/merges.py): a
    merge never lets a suppressed person out. The holds are read by the statement, not compiled in."""
    if segment.kind != SegmentKind.SUPPRESSION or segment.pk is None:
        return None
    return Q(pk__in=SuppressionHold.objects.filter(segment_id=segment.pk).values("contact_id"))


def target_sql(
    segment: Segment, *, now: datetime, fields: dict[str, Field], thresholds: Thresholds
) -> tuple[str, list]:
    """`target_contacts` of the whole segment as SQL and params, compiled once per process for the
    rule, parent, thresholds, field registry and the ids of the segments the rule reads. Raises
    InvalidRule like `target_contacts`.
    """
    slugs = referenced_slugs(segment.rule)
    # An in_segment slug compiles to that segment's id (and to nobody when none has it), so the ids
    # are part of what the SQL was compiled from; a rule reading no segment needs no query here.
    read = sorted(Segment.objects.filter(slug__in=slugs).values_list("slug", "pk")) if slugs else []
    key = (
        "full",
        segment.pk,
        segment.kind,  # a suppression segment's target reads its holds too
        json.dumps(segment.rule, sort_keys=True),
        segment.parent_id,
        json.dumps(thresholds, sort_keys=True),
        _fingerprint(fields),
        tuple(read),
    )
    return _compiled(key, lambda at: _compile(segment, now=at, fields=fields, thresholds=thresholds), now=now)


def scoped_target_key(segment: Segment, *, fields: dict[str, Field]) -> tuple:
    """What a segment's target among some contacts is compiled from, besides `now`: the key of its
    statement in the cache. The ids of the segments the rule reads are not part of it: a segment
    another one reads can be neither deleted nor renamed (segments/editing.py)."""
    return (
        "scoped",
        segment.pk,
        segment.kind,  # a suppression segment's target reads its holds too
        json.dumps(segment.rule, sort_keys=True),
        segment.parent_id,
        json.dumps(segment.percent_thresholds, sort_keys=True),
        _fingerprint(fields),
    )


def scoped_target_sql(
    segment: Segment, *, now: datetime, fields: dict[str, Field], key: tuple | None = None
) -> tuple[str, list]:
    """`target_contacts` among the contacts of a membership write for some contacts
    (membership.scoped_contact_ids), with the thresholds the segment's last full refresh stored,
    as SQL and params compiled once per process. Raises InvalidRule like `target_contacts`.
    `key`: the segment's `scoped_target_key`, when the caller keeps it (refresh_contacts does).
    """
    thresholds = segment.percent_thresholds
    return _compiled(
        key or scoped_target_key(segment, fields=fields),
        lambda at: _compile(segment, now=at, fields=fields, thresholds=thresholds, scoped=True),
        now=now,
    )


def _compile(
    segment: Segment, *, now: datetime, fields: dict[str, Field], thresholds: Thresholds, scoped: bool = False
) -> tuple[str, list]:
    contact_ids = scoped_contact_ids() if scoped else None
    target = target_contacts(segment, now=now, fields=fields, contact_ids=contact_ids, thresholds=thresholds)
    sql, params = target.order_by().values("pk").query.sql_with_params()
    return sql, list(params)


# -- the cache of compiled statements ---------------------------------------------------------


# The registry a refresh passes is one dict for all its segments: its fingerprint is kept with a
# reference to it (so its id cannot be reused) and computed once, not once per segment (hashing
# ~80 fields took 1-3 ms of a one-contact refresh over 50 segments).
_last_fingerprint: tuple[dict[str, Field], int] | None = None


def _fingerprint(fields: dict[str, Field]) -> int:
    global _last_fingerprint
    last = _last_fingerprint
    if last is not None and last[0] is fields:
        return last[1]
    fingerprint = hash(frozenset(fields.items()))
    _last_fingerprint = (fields, fingerprint)
    return fingerprint


def _compiled(key: tuple, compile: Compile, *, now: datetime) -> tuple[str, list]:
    """`compile(now)`, from the cache when `key` was compiled before; `key` must name everything
    the SQL depends on except `now`."""
    found, template = _cached(key)
    if found:
        if template is not None:
            sql, makers = template
            return sql, [make(now) for make in makers]
        return compile(now)
    sql, params = compile(now)
    probe = now + _PROBE_SHIFT
    probe_sql, probe_params = compile(probe)
    made = _param_makers(params, now, probe_params, probe) if probe_sql == sql else None
    _keep(key, (sql, made) if made is not None else None)
    return sql, params


@dataclass(frozen=True)
class Slot:
    """A parameter of a `kept_statement`, filled in on every call: the statement is compiled with
    the Slot itself as the parameter's value (e.g. in a RawSQL), and each call names its value."""

    name: str


def kept_statement(key: tuple, compile: Callable[[], tuple[str, list]], **values: object) -> tuple[str, list]:
    """The SQL and params of `compile()`, compiled once per process and kept in the cache of the
    segments' targets, with each Slot among the params replaced by the call's value of that name.
    `key` must name everything the SQL depends on (the database vendor included); the Slots take
    what changes from call to call (activation/experiments.py: a contact's segment ids)."""
    key = ("kept", *key)
    found, template = _cached(key)
    if found and template is not None:
        sql, makers = template
        params = [make(_NO_TIME) for make in makers]
    else:
        sql, params = compile()
        _keep(key, (sql, [_constant(value) for value in params]))
    return sql, [values[p.name] if isinstance(p, Slot) else p for p in params]


def _cached(key: tuple) -> tuple[bool, tuple[str, list[Param]] | None]:
    with _cache_lock:
        if key not in _cache:
            return False, None
        _cache.move_to_end(key)
        return True, _cache[key]


def _keep(key: tuple, template: tuple[str, list[Param]] | None) -> None:
    with _cache_lock:
        _cache[key] = template
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def _param_makers(params: list, now: datetime, probe_params: list, probe: datetime) -> list[Param] | None:
    """For each parameter, how to make it for another `now`; None if some parameter cannot be."""
    if len(params) != len(probe_params):
        return None
    makers = []
    for value, probe_value in zip(params, probe_params, strict=True):
        make = _shifted(value, now) if value != probe_value else _constant(value)
        if make is None or make(probe) != probe_value:
            return None
        makers.append(make)
    return makers


def _constant(value: object) -> Param:
    return lambda now: value


def _shifted(value: object, origin: datetime) -> Param | None:
    """`value` as a function of `now`, given it was made from `origin` (a moment, a local date, or
    either as ISO text); None when it is none of these."""
    if isinstance(value, str):
        try:
            parsed = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            return None
        moved = _moved(parsed, origin)
        return None if moved is None else (lambda now: moved(now).isoformat())
    if isinstance(value, date):
        return _moved(value, origin)
    return None


def _moved(value: date, origin: datetime) -> Callable[[datetime], date] | None:
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            return None
        offset, zone = value - origin, value.tzinfo
        return lambda now: (now + offset).astimezone(zone)
    days = value - timezone.localdate(origin)
    return lambda now: timezone.localdate(now) + days
