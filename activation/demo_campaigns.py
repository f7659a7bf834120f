"""The demo's campaigns through the year, played at the points of the demo history (segments/demo_history.py).

Each campaign of `CAMPAIGNS` starts at its week: the campaign with a variant per target segment and
an experiment (segment-specific content against the generic default) that starts then. At each of
its send weeks a send is recorded the way the admin's "Record a send" does (experiments.record_send:
the eligible members of that point not exposed before), and the recipients respond: e-mail opens
and clicks carrying the campaign's slug, form submissions and demo requests, in the days after the
send, at rates that favour the segment-specific content. At its stop week the experiment stops and
the campaign ends; the last campaign is still running today.

Deterministic: the experiments' salts are fixed and each send's responses are drawn from a random
generator seeded by the campaign and week, in contact order. Only the catalog segments that exist
and are active get variants; a campaign left with none is not created.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from activation.experiment_models import Arm, Experiment, ExperimentStatus, Exposure, Metric
from activation.experiments import record_send, start, stop
from activation.models import Campaign, CampaignVariant
from contacts.demo_data import PRODUCTS, insert_activity_rows
from contacts.models import ActivityKind
from segments.models import Segment, SegmentStatus

WINDOW_DAYS = 14
# Share of each content arm's recipients doing each thing within the window after a send (before
# the campaign's `response` factor). Segment-specific content does better, as it should.
RATES: dict[str, dict[str, float]] = {
    Arm.SPECIFIC: {"open": 0.40, ActivityKind.EMAIL_CLICK: 0.12, ActivityKind.FORM_SUBMIT: 0.05,
                   ActivityKind.DEMO_REQUEST: 0.04},
    Arm.GENERIC: {"open": 0.31, ActivityKind.EMAIL_CLICK: 0.05, ActivityKind.FORM_SUBMIT: 0.025,
                  ActivityKind.DEMO_REQUEST: 0.015},
}  # fmt: skip


@dataclass(frozen=True)
class DemoVariant:
    segment: str  # slug
    subject: str
    heading: str


@dataclass(frozen=True)
class DemoCampaign:
    slug: str
    name: str
    topic: str  # of contacts/demo_data.PRODUCTS
    subject: str
    heading: str
    variants: list[DemoVariant]
    starts: int  # weeks before now
    sends: list[int]
    stops: int | None  # None: still running
    holdout_percent: int = 0
    metric: str = Metric.CLICK
    secondary: list[str] = field(default_factory=lambda: [Metric.FORM_SUBMIT, Metric.DEMO_REQUEST])
    response: float = 1.0

    @property
    def url(self) -> str:
        return f"https://www.example.com/{self.topic}/{self.slug}"


CAMPAIGNS = [
    DemoCampaign(
        "cloudshift-launch", "CloudShift launch", "cloud-migration",
        "Migrate to the cloud in 90 days with CloudShift", "Your cloud migration, planned for you",
        [
            DemoVariant("cloud-migration-readers", "The migration playbook you have been reading about",
                        "From your reading list to a migration plan"),
            DemoVariant("enterprise-target-accounts", "CloudShift for enterprise estates: a briefing for your team",
                        "Enterprise migrations without the downtime"),
            DemoVariant("icp-below-mql", "How teams like yours cut migration time in half",
                        "A 90-day plan for companies your size"),
        ],
        starts=46, sends=[46, 44, 42], stops=38,
    ),
    DemoCampaign(
        "secureedge-webinars", "SecureEdge zero-trust webinars", "cybersecurity",
        "Zero trust in practice: a webinar series", "Zero trust, one step at a time",
        [
            DemoVariant("cybersecurity-readers", "Your security reading, live: zero-trust webinars",
                        "The series for people who read the threat reports"),
            DemoVariant("enterprise-active-opportunities", "A zero-trust session for your evaluation team",
                        "Bring your evaluation questions"),
            DemoVariant("active-mqls-awaiting-sales", "Seats held for you: zero trust in practice",
                        "Ask our engineers anything"),
        ],
        starts=36, sends=[36, 34, 32], stops=28, holdout_percent=10,
    ),
    DemoCampaign(
        "summer-win-back", "Summer win-back", "data-analytics",
        "What's new this quarter", "A lot has changed since your last visit",
        [
            DemoVariant("recently-disengaged", "We saved you a seat: what's new since you last looked",
                        "Picked for you from what you used to read"),
            DemoVariant("bottom-40-engagement", "Still interested? Three things worth a minute",
                        "Three minutes, three updates"),
        ],
        starts=26, sends=[26, 24], stops=20, secondary=[Metric.FORM_SUBMIT], response=0.6,
    ),
    DemoCampaign(
        "customer-expansion", "Customer expansion", "devops",
        "Get more from the platform you already have", "New capabilities in your plan",
        [
            DemoVariant("enterprise-expansion-candidates", "Your team uses 70% of the platform: here is the rest",
                        "The next step for power users"),
            DemoVariant("rfv-champions", "A thank-you for our best customers, and early access",
                        "Early access, for you first"),
            DemoVariant("at-risk-customers", "Let us help you get value back from your plan",
                        "A free health check of your set-up"),
        ],
        starts=16, sends=[16, 14, 12], stops=8, response=0.8,
    ),
    DemoCampaign(
        "year-end-pipeline", "Year-end pipeline push", "ai-ml",
        "Lock in this year's pricing before January", "This year's pricing, until 31 December",
        [
            DemoVariant("active-mqls-awaiting-sales", "Your shortlist, with this year's pricing",
                        "Talk to us before the price change"),
            DemoVariant("icp-below-mql", "Built for companies like yours: see ModelForge in 20 minutes",
                        "A 20-minute demo, at this year's price"),
            DemoVariant("accelerating-engagement", "You have been busy: here is what fits next",
                        "Picked from what you explored this month"),
        ],
        starts=5, sends=[5, 3, 1], stops=None, holdout_percent=10, secondary=[Metric.DEMO_REQUEST, Metric.FORM_SUBMIT],
    ),
]  # fmt: skip


def salt(campaign: DemoCampaign) -> str:
    return f"demo-{campaign.slug}"


def replay_campaigns(at: datetime, weeks_ago: int) -> None:
    """The campaigns' part in the demo history at one point (segments.demo_history participant)."""
    for campaign in CAMPAIGNS:
        if weeks_ago == campaign.starts:
            begin(campaign, at=at)
        experiment = Experiment.objects.filter(campaign__slug=campaign.slug, salt=salt(campaign)).first()
        if experiment is None or experiment.status != ExperimentStatus.RUNNING:
            continue
        if weeks_ago in campaign.sends:
            send(campaign, experiment, at=at, now=at + timedelta(weeks=weeks_ago))
        if weeks_ago == campaign.stops:
            stop(experiment, now=at)
            Campaign.objects.filter(pk=experiment.campaign_id).update(active=False)


def begin(spec: DemoCampaign, *, at: datetime) -> Experiment | None:
    """The campaign, its variants and its running experiment; None when it exists already or no
    target segment does."""
    if Campaign.objects.filter(slug=spec.slug).exists():
        return None
    segments = Segment.objects.filter(status=SegmentStatus.ACTIVE).in_bulk(
        [v.segment for v in spec.variants], field_name="slug"
    )
    variants = [v for v in spec.variants if v.segment in segments]
    if not variants:
        return None
    campaign = Campaign.objects.create(
        name=spec.name, slug=spec.slug, subject=spec.subject, preheader=f"{spec.name}: {PRODUCTS[spec.topic]}",
        content_blocks=_blocks(spec.heading, spec.url), cta_text="Read more", cta_url=spec.url, created_at=at,
    )  # fmt: skip
    CampaignVariant.objects.bulk_create(
        CampaignVariant(
            campaign=campaign,
            segment=segments[v.segment],
            priority=priority,
            subject=v.subject,
            content_blocks=_blocks(v.heading, spec.url),
        )
        for priority, v in enumerate(variants, start=1)
    )
    holdout = spec.holdout_percent
    experiment = Experiment.objects.create(
        campaign=campaign, name=f"{spec.name}: segment content vs generic", salt=salt(spec),
        specific_percent=(100 - holdout + 1) // 2, generic_percent=(100 - holdout) // 2, holdout_percent=holdout,
        metric=spec.metric, secondary_metrics=list(spec.secondary), window_days=WINDOW_DAYS, created_at=at,
    )  # fmt: skip
    experiment.target_segments.set([segments[v.segment] for v in variants])
    start(experiment, now=at)
    return experiment


def _blocks(heading: str, url: str) -> list[dict]:
    return [
        {"type": "heading", "text": heading},
        {"type": "text", "text": "A few minutes of reading, picked for you."},
        {"type": "button", "url": url},
    ]


def send(spec: DemoCampaign, experiment: Experiment, *, at: datetime, now: datetime) -> int:
    """Record a send at `at` and write its recipients' responses up to `now`; returns the recipients."""
    sent = record_send(experiment, now=at)
    exposed = (
        Exposure.objects.filter(experiment=experiment, exposed_at=at, arm__in=list(RATES))
        .order_by("contact_id")
        .values_list("contact_id", "arm")
    )
    rng = random.Random(f"{spec.slug}:{at:%Y-%m-%d}")
    rows = [row for contact_id, arm in exposed for row in _responses(spec, rng, contact_id, arm, at=at)]
    insert_activity_rows((row for row in rows if row[2] <= now), created_at=now)
    return sent


def _responses(spec: DemoCampaign, rng: random.Random, contact_id: int, arm: str, *, at: datetime) -> list[tuple]:
    """One recipient's activities after the send, as contacts.demo_data.insert_activity_rows takes them."""
    rates = {kind: rate * spec.response for kind, rate in RATES[arm].items()}
    draws = {kind: rng.random() < rate for kind, rate in rates.items()}
    product, rows = PRODUCTS[spec.topic], []

    def row(kind: str, occurred: datetime, url: str = "") -> tuple:
        return (contact_id, kind, occurred, spec.topic, product, url, spec.slug, None)

    opened = at + timedelta(hours=min(24 * WINDOW_DAYS - 1, rng.expovariate(1 / 20)))
    if draws["open"] or draws[ActivityKind.EMAIL_CLICK]:
        rows.append(row(ActivityKind.EMAIL_OPEN, opened))
    if draws[ActivityKind.EMAIL_CLICK]:
        rows.append(row(ActivityKind.EMAIL_CLICK, opened + timedelta(minutes=rng.uniform(1, 30)), spec.url))
    for kind in (ActivityKind.FORM_SUBMIT, ActivityKind.DEMO_REQUEST):
        if draws[kind]:
            rows.append(row(kind, at + timedelta(days=rng.uniform(0, WINDOW_DAYS - 1)), spec.url))
    return rows
