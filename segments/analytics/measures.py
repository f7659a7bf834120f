"""Reading the rollups: measures with intervals for a segment, all segments side by side, channels.

Stored calendar periods (day, ISO week, month, quarter) are read from their rows in a fixed number
of queries; any other range, or a period not rolled up yet, is computed on the spot by the same
code that writes the rollups (segments/analytics/rollup.py), without storing it.

Engagement and channel or campaign response are shares of the contacts who were members at some
time in the period (95% Wilson intervals over that count). Conversion is over the period's average
members (the mean of each day's members at its start and end), as the issue defines it; its
Wilson interval takes that average, rounded (and at least the conversions), as the trials. Revenue
per contact is won deal amounts plus purchase values over average members, with a normal
approximation interval from the spread of revenue across members.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone

from segments.models import AnalyticsGrain, Segment, SegmentChangeStat, SegmentResponse, SegmentStageStat, SegmentStat

from . import rollup
from .channels import CHANNELS, CONVERSION_STAGES, DEFAULT_STAGE, FUNNEL
from .periods import BadParameter, Period, period_of, periods_between
from .wilson import EMPTY, Estimate, mean_with_interval, wilson


@dataclass
class Response:
    name: str
    responders: int
    activities: int
    converted: int
    rate: Estimate
    flag: str = ""  # "high" / "low": the interval lies above / below the database's rate


@dataclass
class Measures:
    segment: Segment | None
    period: Period
    members_start: int
    members_end: int
    avg_members: float
    members_during: int
    engaged: int
    engagement: Estimate
    opens_per_member: float | None
    clicks_per_member: float | None
    stage: str
    converted: int
    conversion: Estimate
    revenue: Decimal
    revenue_per_contact: Estimate
    won_deals: int
    won_amount: Decimal
    purchases: int
    purchase_value: Decimal
    deals_created: int
    pipeline_created: Decimal
    stage_moves: dict[str, dict[str, int]] = field(default_factory=dict)
    joins: dict[str, int] = field(default_factory=dict)
    leaves: dict[str, int] = field(default_factory=dict)
    channels: dict[str, Response] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.segment.name if self.segment else "Whole database"

    @property
    def growth(self) -> int:
        return self.members_end - self.members_start

    @property
    def growth_rate(self) -> float | None:
        return self.growth / self.members_start if self.members_start else None

    @property
    def verdict(self) -> str:
        """high-performing / underperforming / mixed / "" from the flags of the three headline rates."""
        flags = set(self.flags.values())
        if flags == {"high"}:
            return "high-performing"
        if flags == {"low"}:
            return "underperforming"
        return "mixed" if flags else ""


def trials(avg_members: float, successes: int) -> int:
    return max(round(avg_members), successes)


def check_stage(stage: str, *, parameter: str = "stage") -> str:
    if stage not in CONVERSION_STAGES:
        raise BadParameter(
            f"{parameter}: {stage!r} is not a stage conversion can be measured to; use one of "
            f"{', '.join(CONVERSION_STAGES)}.",
            parameter=parameter,
        )
    return stage


def check_channel(channel: str, *, parameter: str = "channel") -> str:
    if channel not in CHANNELS:
        raise BadParameter(
            f"{parameter}: {channel!r} is not a channel; use one of {', '.join(CHANNELS)}.", parameter=parameter
        )
    return channel


def _measures(segment, period, stat: SegmentStat, *, stage: str, stage_rows, change_rows, response_rows) -> Measures:
    n = stat.avg_members
    revenue = Decimal(stat.won_amount) + Decimal(stat.purchase_value)
    moves = {row.stage: {"reached": row.reached, "from_previous": row.from_previous} for row in stage_rows}
    converted = stat.converted
    if stage != DEFAULT_STAGE:
        converted = next((row.converted for row in stage_rows if row.stage == stage), 0)
    joins: dict[str, int] = defaultdict(int)
    leaves: dict[str, int] = defaultdict(int)
    for row in change_rows:
        (joins if row.kind == "join" else leaves)[row.reason] += row.n
    channels = {}
    for row in response_rows:
        if row.channel:
            channels[row.channel] = Response(
                row.channel, row.responders, row.activities, row.converted, wilson(row.responders, stat.members_during)
            )
    return Measures(
        segment=segment,
        period=period,
        members_start=stat.members_start,
        members_end=stat.members_end,
        avg_members=n,
        engaged=stat.engaged,
        members_during=stat.members_during,
        engagement=wilson(stat.engaged, stat.members_during),
        opens_per_member=stat.opens / n if n else None,
        clicks_per_member=stat.clicks / n if n else None,
        stage=stage,
        converted=converted,
        conversion=wilson(converted, trials(n, converted)),
        revenue=revenue,
        revenue_per_contact=mean_with_interval(float(revenue), stat.revenue_sq, n),
        won_deals=stat.won_deals,
        won_amount=Decimal(stat.won_amount),
        purchases=stat.purchases,
        purchase_value=Decimal(stat.purchase_value),
        deals_created=stat.deals_created,
        pipeline_created=Decimal(stat.pipeline_created),
        stage_moves={s: moves.get(s, {"reached": 0, "from_previous": 0}) for s in FUNNEL[1:]},
        joins=dict(joins),
        leaves=dict(leaves),
        channels=channels,
    )


@dataclass
class _Rows:
    stats: list
    stages: list
    changes: list
    responses: list


def _read(period: Period, segment_ids: list[int], *, database: bool, stage: str, with_responses: bool) -> _Rows:
    """The stored rows of one calendar period, or the same rows computed now for any other range."""
    if period.grain:
        scope = {"grain": period.grain, "period_start": period.first}
        scope_q = Q(segment_id__in=segment_ids) | Q(segment__isnull=True) if database else Q(segment_id__in=segment_ids)
        stats = list(SegmentStat.objects.filter(scope_q, **scope))
        if len(stats) == len(segment_ids) + database:
            stages = list(SegmentStageStat.objects.filter(scope_q, **scope))
            changes = list(SegmentChangeStat.objects.filter(**scope, segment_id__in=segment_ids))
            responses = list(SegmentResponse.objects.filter(scope_q, **scope, campaign="")) if with_responses else []
            return _Rows(stats, stages, changes, responses)
    computed = rollup.compute([period], segment_ids=segment_ids, database=database)
    return _Rows(computed.stats, computed.stages, computed.changes, computed.responses)


def _assemble(rows: _Rows, segments: dict[int | None, Segment | None], period: Period, *, stage: str) -> dict:
    stages, changes, responses = defaultdict(list), defaultdict(list), defaultdict(list)
    for row in rows.stages:
        stages[row.segment_id].append(row)
    for row in rows.changes:
        changes[row.segment_id].append(row)
    for row in rows.responses:
        responses[row.segment_id].append(row)
    return {
        stat.segment_id: _measures(
            segments.get(stat.segment_id),
            period,
            stat,
            stage=stage,
            stage_rows=stages[stat.segment_id],
            change_rows=changes[stat.segment_id],
            response_rows=responses[stat.segment_id],
        )
        for stat in rows.stats
        if stat.segment_id in segments
    }


def segment_measures(segment: Segment | None, period: Period, *, stage: str = DEFAULT_STAGE) -> Measures:
    """One segment's measures over a period (segment None: the whole database), with channels."""
    check_stage(stage)
    ids = [segment.pk] if segment else []
    rows = _read(period, ids, database=segment is None, stage=stage, with_responses=True)
    key = segment.pk if segment else None
    return _assemble(rows, {key: segment}, period, stage=stage)[key]


def flag(estimate: Estimate, baseline: Estimate) -> str:
    if baseline.value is None or estimate.low is None or not estimate.excludes(baseline.value):
        return ""
    return "high" if estimate.low > baseline.value else "low"


HEADLINE = ("engagement", "conversion", "revenue_per_contact")


@dataclass
class Comparison:
    period: Period
    stage: str
    baseline: Measures
    rows: list[Measures]


def compare_segments(
    period: Period, *, stage: str = DEFAULT_STAGE, segments: list[Segment] | None = None
) -> Comparison:
    """Every active segment over the period beside the whole database, each headline rate flagged
    high or low only when its interval excludes the database's value."""
    check_stage(stage)
    if segments is None:
        segments = list(Segment.objects.active().order_by("name"))
    by_id: dict[int | None, Segment | None] = {s.pk: s for s in segments}
    by_id[None] = None
    rows = _read(period, [s.pk for s in segments], database=True, stage=stage, with_responses=True)
    measures = _assemble(rows, by_id, period, stage=stage)
    baseline = measures.pop(None)
    for row in measures.values():
        row.flags = {name: mark for name in HEADLINE if (mark := flag(getattr(row, name), getattr(baseline, name)))}
        for channel, response in row.channels.items():
            base = baseline.channels.get(channel)
            response.flag = flag(response.rate, base.rate if base else EMPTY)
    ordered = [measures[s.pk] for s in segments if s.pk in measures]
    return Comparison(period=period, stage=stage, baseline=baseline, rows=ordered)


def campaign_response(segment: Segment | None, period: Period) -> list[Response]:
    """Responders by campaign for one segment (month, quarter or range), most responders first."""
    grain = period.grain if period.grain in rollup.CAMPAIGN_GRAINS else None
    if grain:
        rows = list(
            SegmentResponse.objects.filter(grain=grain, period_start=period.first, segment=segment).exclude(campaign="")
        )
        stat = SegmentStat.objects.filter(grain=grain, period_start=period.first, segment=segment).first()
    else:
        rows, stat = [], None
    if stat is None:
        computed = rollup.compute(
            [Period(period.first, period.last)], segment_ids=[segment.pk] if segment else [], database=segment is None
        )
        rows = [row for row in computed.responses if row.campaign]
        stat = computed.stats[0]
    out = [
        Response(r.campaign, r.responders, r.activities, r.converted, wilson(r.responders, stat.members_during))
        for r in rows
    ]
    return sorted(out, key=lambda r: (-r.responders, r.name))


def measure_series(segment: Segment | None, grain: str, first: date, last: date) -> list[Measures]:
    """The segment's measures for each period of `grain` from first to last, from stored rows only
    (periods not rolled up yet are left out), in two queries."""
    periods = periods_between(first, last, grain)
    starts = [p.first for p in periods]
    stats = SegmentStat.objects.filter(grain=grain, period_start__in=starts, segment=segment).order_by("period_start")
    changes = defaultdict(list)
    if segment is not None:
        for row in SegmentChangeStat.objects.filter(grain=grain, period_start__in=starts, segment=segment):
            changes[row.period_start].append(row)
    return [
        _measures(
            segment,
            period_of(stat.period_start, grain),
            stat,
            stage=DEFAULT_STAGE,
            stage_rows=[],
            change_rows=changes[stat.period_start],
            response_rows=[],
        )
        for stat in stats
    ]


SIZE_DAYS = 92


def day_sizes(segment: Segment, period: Period) -> tuple[list[date], list[int]]:
    """Members at the end of each day over the period's last 92 days (up to today), from the
    stored day rows in one query; a day not rolled up yet repeats the day before."""
    last = min(period.last, timezone.localdate())
    first = max(period.first, last - timedelta(days=SIZE_DAYS - 1))
    stored = dict(
        SegmentStat.objects.filter(
            segment=segment, grain=AnalyticsGrain.DAY, period_start__gte=first, period_start__lte=last
        ).values_list("period_start", "members_end")
    )
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    sizes, running = [], 0
    for day in days:
        running = stored.get(day, running)
        sizes.append(running)
    return days, sizes
