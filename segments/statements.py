"""Target SQL compiled once per process and re-parameterised for each refresh's `now`.

Compiling a rule through the ORM costs about a millisecond of Python, the whole of a small
segment's refresh statement. So a segment's target SQL is kept per process and reused while
everything it was compiled from (the caller's key: rule, parent, thresholds, field registry)
stays the same. Only the parameters that depend on `now` change between calls (event windows,
relative dates): they are found by compiling at two instants a day and a bit apart and
comparing, and are shifted to each call's `now`; a rule whose parameters do not shift that way is
compiled on every call instead. Used by refresh_contacts' level statements (segments/scoped.py)
and by the full refresh (segments/targets.py `target_sql`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime, timedelta

from django.utils import timezone

from segments.rules.registry import Field

# Compiled statements kept per process (a few per active segment at most).
CACHE_SIZE = 1024
# The second instant a rule is compiled at, to tell `now`-dependent parameters from constants.
_PROBE_SHIFT = timedelta(days=1, hours=1, minutes=1, seconds=1, microseconds=1)

Param = Callable[[datetime], object]
Compile = Callable[[datetime], tuple[str, list]]

_cache: OrderedDict[tuple, tuple[str, list[Param]] | None] = OrderedDict()
_cache_lock = threading.Lock()  # web servers may refresh from several threads


def fields_fingerprint(fields: dict[str, Field]) -> int:
    return hash(frozenset(fields.items()))


def compiled_sql(key: tuple, compile: Compile, *, now: datetime) -> tuple[str, list]:
    """`compile(now)`, from the cache when `key` was compiled before; `key` must name everything
    the SQL depends on except `now`."""
    with _cache_lock:
        found = key in _cache
        template = _cache[key] if found else None
        if found:
            _cache.move_to_end(key)
    if found:
        if template is not None:
            sql, makers = template
            return sql, [make(now) for make in makers]
        return compile(now)
    sql, params = compile(now)
    probe = now + _PROBE_SHIFT
    probe_sql, probe_params = compile(probe)
    makers = _param_makers(params, now, probe_params, probe) if probe_sql == sql else None
    with _cache_lock:
        _cache[key] = (sql, makers) if makers is not None else None
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return sql, params


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
        shift = _shifted(parsed, origin)
        return None if shift is None else (lambda now: shift(now).isoformat())
    if isinstance(value, datetime):
        if timezone.is_naive(value):
            return None
        offset, zone = value - origin, value.tzinfo
        return lambda now: (now + offset).astimezone(zone)
    if isinstance(value, date):
        days = value - timezone.localdate(origin)
        return lambda now: timezone.localdate(now) + days
    return None
