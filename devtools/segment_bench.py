"""The segment refresh benchmark (`manage.py bench_segments`), PostgreSQL only.

Data is generated set-based with generate_series; ~30 segments of the kinds the issue lists are
installed through save_segment; then each phase is measured and collected in a plain dict that
the command prints and writes as JSON. It drives the engine through its public functions only;
the hand-written baselines it compares each refresh with write their own SQL, as a hand-writer would.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django_q.models import OrmQ

from contacts.models import Activity, ActivityTally, Company, Contact, PropertyDefinition
from contacts.partitions import ensure_partitions
from contacts.table_statistics import analyze
from devtools.generate import insert_series, settle, sql_array
from devtools.measure import peak_rss_mb
from segments.editing import save_segment
from segments.locks import lock_key
from segments.models import Membership, MembershipChange, RuleVersion, Segment, SegmentDay, SegmentReference
from segments.refresh import refresh_all, refresh_contacts, refresh_order, refresh_segment
from segments.rules.compiler import matching_contacts
from segments.rules.thresholds import percent_conditions
from segments.targets import target_contacts
from segments.tasks import describe_changes_task

# The tables the hand-written baselines write (written out here: they are compared with the
# product's writer, segments/membership.py, and share nothing with it).
MEMBERSHIP = Membership._meta.db_table
CHANGE = MembershipChange._meta.db_table
SEGMENT = Segment._meta.db_table
DAY = SegmentDay._meta.db_table
ADD_TO_DAY = f"""ON CONFLICT (segment_id, day) DO UPDATE SET joins = {DAY}.joins + excluded.joins,
    leaves = {DAY}.leaves + excluded.leaves, size = excluded.size"""

PREFIX = "bench-"
# The 20 segments added for the refresh_contacts latency phase (50 active in all); their own prefix
# keeps the other phases (preview counts) on the ~30-segment catalog.
LATENCY_PREFIX = "bench50-"
DESCRIBE_TASK = f"{describe_changes_task.__module__}.{describe_changes_task.__name__}"
INDUSTRIES = ["software", "financial-services", "healthcare", "manufacturing", "retail", "education"]
STAGES = ["subscriber", "lead", "lead", "lead", "mql", "sql", "opportunity", "customer", "customer", "other"]
SENIORITIES = ["entry", "senior", "senior", "manager", "manager", "director", "vp", "cxo", ""]
KINDS = ["email_open"] * 30 + ["page_view"] * 25 + ["email_click"] * 12 + ["site_visit"] * 12 + [
    "content_download", "content_download", "form_submit", "pricing_view", "pricing_view", "sales_touch",
    "purchase", "demo_request", "support_ticket_opened", "support_ticket_closed",
]  # fmt: skip
# Days the activity stream covers, ending now.
HISTORY_DAYS = 540
TOPICS = ["cloud-migration", "cybersecurity", "data-analytics", "devops", "ai-ml", "compliance", "", ""]
TECHS = ["aws", "azure", "gcp", "kubernetes", "docker", "terraform", "snowflake", "okta"]


def _pick(values: list[str]) -> str:
    return f"({sql_array(values)})[1 + floor(random() * {len(values)})::int]"


COMPANY_COLUMNS = {
    "name": "'Bench company ' || g",
    "domain": "'company' || g || '.bench.example'",
    "industry": _pick(INDUSTRIES),
    "employee_count": "(exp(random() * ln(20000)))::int",
    "country": _pick(["US", "US", "GB", "DE", "FR", "CA"]),
    "technologies": f"jsonb_build_array({_pick(TECHS)}, {_pick(TECHS)})",
    "is_target_account": "random() < 0.05",
    "is_competitor": "random() < 0.005",
}


def contact_columns(companies: int) -> dict[str, str]:
    return {
        "email": "'c' || g || '@bench.example'",
        "first_name": "'Ada'",
        "last_name": "'Bench-' || g",
        "company_id": f"CASE WHEN random() < 0.9 THEN 1 + floor(random() * {companies})::int END",
        "country": _pick(["US", "US", "US", "GB", "DE", "FR", "CA", "AU"]),
        "seniority": _pick(SENIORITIES),
        "lifecycle_stage": _pick(STAGES),
        "lead_score": "floor(random() * 101)::int",
        "renewal_date": "CASE WHEN random() < 0.2 THEN current_date + floor(random() * 365)::int END",
        "product_adoption": "CASE WHEN random() < 0.2 THEN floor(random() * 101)::int END",
        "technologies": f"jsonb_build_array({_pick(TECHS)})",
        "properties": f"jsonb_build_object('tier', {_pick(['gold', 'silver', 'bronze', 'bronze'])}, "
        "'nps', floor(random() * 11)::int)",
    }


def activity_columns(contacts: int, activities: int) -> dict[str, str]:
    """Activity is skewed: random()^2 puts most of it on a minority of contacts, as in real CRMs.

    The stream covers HISTORY_DAYS (540) days and is stored as it would have arrived: row g at the g-th step of
    that span, up to six hours late. Scattering the times over the whole table instead made every
    "within N days" condition read nearly every page of it: counting cloud-readers (page_view twice
    in 90 days) read all 125,000 pages, 758-3,355 ms, against 250-608 ms in arrival order.
    """
    return {
        "contact_id": f"1 + floor(power(random(), 2) * {contacts})::int",
        "kind": _pick(KINDS),
        "occurred_at": f"now() - interval '{HISTORY_DAYS} days' * (({activities} - g)::float8 / {activities}) "
        "- random() * interval '6 hours'",
        "topic": _pick(TOPICS),
        "value": "CASE WHEN random() < 0.02 THEN round((random() * 5000)::numeric, 2) END",
    }


def event(kind: str, op: str = "performed", value=None, within: int | None = None, **filters) -> dict:
    """An event condition of a bench rule."""
    rule: dict[str, Any] = {"event": {"kind": kind, **filters}, "op": op}
    if value is not None:
        rule["value"] = value
    if within is not None:
        rule["within_days"] = within
    return rule


def bench_rules() -> list[dict]:
    """~30 segments: property-only, company join, custom property, event windows, nesting, sizes."""

    def seg(slug, rule, **fields):
        return {"slug": PREFIX + slug, "rule": rule, **fields}

    return [
        seg("mql", {"field": "lifecycle_stage", "op": "eq", "value": "mql"}),
        seg("score-80", {"field": "lead_score", "op": "gte", "value": 80}),
        seg("score-20", {"field": "lead_score", "op": "gte", "value": 20}),  # the ~80% one
        seg("score-mid", {"field": "lead_score", "op": "between", "value": [40, 60]}),
        seg("north-america", {"field": "country", "op": "in", "value": ["US", "CA"]}),
        seg("leaders", {"field": "seniority", "op": "in", "value": ["director", "vp", "cxo"]}),
        seg("renewing-90", {"field": "renewal_date", "op": "in_next_days", "value": 90}),
        seg("k8s", {"field": "technologies", "op": "contains_any", "value": ["kubernetes"]}),
        seg("enterprise", {"field": "company.employee_count", "op": "gte", "value": 1000}),
        seg("software", {"field": "company.industry", "op": "eq", "value": "software"}),
        seg("target-accounts", {"field": "company.is_target_account", "op": "is_true"}),
        seg("competitors", {"field": "company.is_competitor", "op": "is_true"}, kind="suppression"),
        seg("gold", {"field": "props.tier", "op": "eq", "value": "gold"}),
        seg("promoters", {"field": "props.nps", "op": "gte", "value": 9}),
        seg("clickers-30", event("email_click", "count_gte", 3, 30)),
        seg("cloud-readers", event("page_view", "count_gte", 2, 90, topic="cloud-migration")),
        seg("pricing-14", event("pricing_view", within=14)),
        seg("demo-30", event("demo_request", within=30)),  # under 1%
        seg("buyers-1000", event("purchase", "sum_gte", 1000, 365)),
        seg("silent-30", event("email_open", "not_performed", within=30)),
        seg("visitors-5", event("site_visit", "count_gte", 5)),
        seg("top-10", {"field": "lead_score", "op": "top_percent", "value": 10}),
        seg("enterprise-pipeline", {"field": "lifecycle_stage", "op": "in", "value": ["mql", "sql"]}, parent="enterprise"),  # noqa: E501
        seg("enterprise-pipeline-hot", {"field": "lead_score", "op": "gte", "value": 70}, parent="enterprise-pipeline"),
        seg("enterprise-pipeline-hot-cxo", {"field": "seniority", "op": "eq", "value": "cxo"}, parent="enterprise-pipeline-hot"),  # noqa: E501
        seg("clickers-us", {"field": "country", "op": "eq", "value": "US"}, parent="clickers-30"),
        seg("mql-or-demo", {"any": [{"field": "lifecycle_stage", "op": "eq", "value": "mql"}, event("demo_request", within=30)]}),  # noqa: E501
        seg("prospects-clean", {"all": [{"field": "lead_score", "op": "gte", "value": 50}, {"not": {"in_segment": PREFIX + "competitors"}}]}),  # noqa: E501
        seg("big-cxo", {"all": [{"field": "seniority", "op": "eq", "value": "cxo"}, {"field": "company.employee_count", "op": "gte", "value": 5000}]}),  # noqa: E501
        seg("gold-enterprise-readers", {"all": [{"in_segment": PREFIX + "gold"}, {"in_segment": PREFIX + "enterprise"}, event("content_download", within=180)]}),  # noqa: E501
    ]  # fmt: skip


def latency_rules() -> list[dict]:
    """20 more segments of the same kinds, so that refresh_contacts is timed across 50."""

    def seg(slug, rule, **fields):
        return {"slug": LATENCY_PREFIX + slug, "rule": rule, **fields}

    return [
        seg("sql", {"field": "lifecycle_stage", "op": "eq", "value": "sql"}),
        seg("customers", {"field": "lifecycle_stage", "op": "eq", "value": "customer"}),
        seg("score-90", {"field": "lead_score", "op": "gte", "value": 90}),
        seg("bottom-40", {"field": "lead_score", "op": "bottom_percent", "value": 40}),
        seg("nps-top-25", {"field": "props.nps", "op": "top_percent", "value": 25}),
        seg("europe", {"field": "country", "op": "in", "value": ["GB", "DE", "FR"]}),
        seg("adopters", {"field": "product_adoption", "op": "gte", "value": 50}),
        seg("renewing-30", {"field": "renewal_date", "op": "in_next_days", "value": 30}),
        seg("azure-or-gcp", {"field": "technologies", "op": "contains_any", "value": ["azure", "gcp"]}),
        seg("mid-market", {"field": "company.employee_count", "op": "between", "value": [100, 999]}),
        seg("financial", {"field": "company.industry", "op": "eq", "value": "financial-services"}),
        seg("company-aws", {"field": "company.technologies", "op": "contains_any", "value": ["aws"]}),
        seg("silver", {"field": "props.tier", "op": "eq", "value": "silver"}),
        seg("openers-7", event("email_open", within=7)),
        seg("security-readers", event("page_view", "count_gte", 2, 180, topic="cybersecurity")),
        seg("forms-90", event("form_submit", within=90)),
        seg("tickets-30", event("support_ticket_opened", within=30)),
        seg("enterprise-customers", {"field": "lifecycle_stage", "op": "eq", "value": "customer"}, parent=PREFIX + "enterprise"),  # noqa: E501
        seg("engaged-mql", {"all": [{"field": "lifecycle_stage", "op": "eq", "value": "mql"}, event("email_click", within=60)]}),  # noqa: E501
        seg("us-prospects", {"all": [{"field": "country", "op": "eq", "value": "US"}, {"not": {"in_segment": PREFIX + "competitors"}}]}),  # noqa: E501
    ]  # fmt: skip


# The baselines' diff, as a hand-writer puts it: one FULL JOIN of the target (`{target_sql}`) and
# the stored members, the membership writes and the history rows (params: _hand_diff_params).
_HAND_DIFF = f"""target(id) AS ({{target_sql}}),
    diff AS (
        SELECT COALESCE(t.id, m.contact_id) AS contact_id, t.id IS NOT NULL AS joined
        FROM target t FULL JOIN (SELECT contact_id FROM {MEMBERSHIP} WHERE segment_id = %s) m
        ON m.contact_id = t.id WHERE t.id IS NULL OR m.contact_id IS NULL),
    ins AS (INSERT INTO {MEMBERSHIP} (segment_id, contact_id, joined_at)
        SELECT %s, contact_id, now() FROM diff WHERE joined),
    del AS (DELETE FROM {MEMBERSHIP} m USING diff d
        WHERE m.segment_id = %s AND m.contact_id = d.contact_id AND NOT d.joined),
    hist AS (INSERT INTO {CHANGE} (segment_id, contact_id, kind, reason, changed_at)
        SELECT %s, contact_id, CASE WHEN joined THEN 'join' ELSE 'leave' END, 'rule', now() FROM diff)"""


def _hand_diff_params(segment: Segment) -> list:
    return [segment.pk] * 4


class Bench:
    def __init__(
        self,
        *,
        contacts: int,
        activities: int,
        sample: int,
        log: Callable[[str], None],
        baseline_runs: int = 2,
        checkpoint: Callable[[dict], object] | None = None,
    ) -> None:
        self.contacts, self.activities, self.sample, self.log = contacts, activities, sample, log
        self.baseline_runs = baseline_runs
        self.checkpoint = checkpoint or (lambda report: None)
        self.report: dict = {"contacts": contacts, "activities": activities, "phases": {}}

    # -- data ---------------------------------------------------------------------------------

    def reset(self, *, keep_data: bool = False) -> None:
        models = [MembershipChange, Membership, SegmentReference, RuleVersion, Segment]
        if not keep_data:
            models += [Activity, Contact, Company]
        tables = ", ".join(model._meta.db_table for model in models)
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")

    def generate(self) -> None:
        companies = max(1, self.contacts // 10)
        with self._timed("generate") as phase:
            with connection.cursor() as cursor:
                cursor.execute("SELECT setseed(0.42)")  # the same data every time, in this session
            insert_series(Company, COMPANY_COLUMNS, companies)
            insert_series(Contact, contact_columns(companies), self.contacts)
            # The stream's months get their partitions first (as a production table has them), so
            # that no row lands in DEFAULT.
            ensure_partitions(since=(datetime.now(UTC) - timedelta(days=HISTORY_DAYS + 1)).date())
            insert_series(Activity, activity_columns(self.contacts, self.activities), self.activities)
            phase["companies"] = companies
        settle(Company, Contact, Activity, ActivityTally)
        tier = {"label": "Tier", "type": "choice", "choices": ["gold", "silver", "bronze"], "layer": "value"}
        PropertyDefinition.objects.get_or_create(key="tier", defaults=tier)
        nps = {"label": "NPS", "type": "number", "layer": "psychographic"}
        PropertyDefinition.objects.get_or_create(key="nps", defaults=nps)

    def install_segments(self) -> None:
        self.report["segments"] = len(self._install(bench_rules()))

    def install_latency_segments(self) -> None:
        """The 20 latency-only segments (those not installed yet), each built by a full refresh."""
        existing = set(Segment.objects.filter(slug__startswith=LATENCY_PREFIX).values_list("slug", flat=True))
        installed = self._install([spec for spec in latency_rules() if spec["slug"] not in existing])
        with self._timed("latency_segments_build") as phase:
            for segment_id in refresh_order(segment.pk for segment in installed.values()):
                result = refresh_segment(segment_id)
                if result.status != "ok":
                    raise RuntimeError(f"{result.slug} failed: {result.error}")
            phase["installed"] = len(installed)
        if installed:
            settle(Membership, MembershipChange)  # as after the cold build

    def store_missing_thresholds(self) -> None:
        """Refresh, as the sweep would, the segments whose percent thresholds were never stored
        (built before thresholds were stored), so scoped refreshes read stored ones."""
        for segment in Segment.objects.filter(slug__startswith="bench", percent_thresholds={}):
            if percent_conditions(segment.rule):
                refresh_segment(segment.pk)

    def _install(self, specs: list[dict]) -> dict[str, Segment]:
        by_slug: dict[str, Segment] = {}
        for spec in specs:
            parent = None
            if "parent" in spec:
                name = spec.pop("parent")
                name = name if name.startswith(PREFIX) else PREFIX + name
                parent = by_slug.get(name) or Segment.objects.get(slug=name)
            slug = spec["slug"]
            segment = Segment(name=slug, kind=spec.pop("kind", "dynamic"), parent=parent, **spec)
            by_slug[slug] = save_segment(segment)
        drop_queued("segments.tasks.refresh_segment_task")  # save_segment queued builds; the benchmark builds them
        return by_slug

    def churn(self, percent: float) -> int:
        """Change lead score and stage of `percent`% of contacts and give each a fresh click."""
        if not percent:
            return 0
        modulus = round(100 / percent)
        with connection.cursor() as cursor:
            cursor.execute(
                f"""UPDATE {Contact._meta.db_table} SET lead_score = floor(random() * 101)::int,
                lifecycle_stage = {_pick(STAGES)} WHERE id %% %s = 0""",
                [modulus],
            )
            changed = cursor.rowcount
            cursor.execute(
                f"""INSERT INTO {Activity._meta.db_table} (contact_id, kind, occurred_at, topic, product, url,
                campaign, created_at) SELECT id, 'email_click', now(), 'cloud-migration', '', '', '', now()
                FROM {Contact._meta.db_table} WHERE id %% %s = 0""",
                [modulus],
            )
        return changed

    # -- measurements -------------------------------------------------------------------------

    def refresh_phase(self, name: str, *, now: datetime | None = None) -> dict:
        """Refresh every segment at `now` (default: the sweep's start), timed, with what it wrote."""
        rows_before = self._history_rows()
        now = now or timezone.now()
        started = time.perf_counter()
        results = refresh_all(now=now)
        elapsed = time.perf_counter() - started
        drop_queued(DESCRIBE_TASK)  # no worker runs here; the detail tasks are timed in the latency phase
        if name == "cold_build":
            settle(Membership, MembershipChange)
        failed = [r for r in results if r.status != "ok"]
        if failed:
            raise RuntimeError(f"{name}: {failed[0].slug} failed: {failed[0].error}")
        changes = sum(r.added + r.removed for r in results)
        phase = {
            "now": now.isoformat(),
            "seconds": round(elapsed, 3),
            "changes": changes,
            "rows_written": changes * 2,  # a membership row and a history row per change
            "history_rows_added": self._history_rows() - rows_before,
            "segments": {
                r.slug: {"ms": r.duration_ms, "size": r.size, "added": r.added, "removed": r.removed} for r in results
            },
            "peak_rss_mb": peak_rss_mb(),
        }
        self.report["phases"][name] = phase
        self.log(f"{name:<16} {elapsed:8.2f}s  changes {changes:>10,}  rows written {changes * 2:>10,}")
        self.checkpoint(self.report)
        return phase

    def baseline_comparison(self) -> dict:
        """Per segment: our refresh vs the same work written by hand, two ways.

        `ratio`: against the diff alone, as one FULL JOIN statement writing the membership and the
        history. `refresh_ratio`: against the same refresh by hand, which also takes the segment's
        lock and records the refresh on the segment and in the daily rollup, as ours does (what
        the design asks of a refresh), in as few round trips as a hand-writer needs.
        All run on the same state, each in a transaction of its own (a savepoint inside one that is
        rolled back: the savepoint's two round trips are the BEGIN and COMMIT each pays in
        production), best of --baseline-runs runs.
        The membership tables are analysed first, as autovacuum would have done after the builds
        before it: on a server running without autovacuum the planner would otherwise plan both
        sides from no statistics at all (a child segment then probes the parent's members once per
        contact: enterprise-pipeline-hot-cxo 202 vs 128 ms unanalysed, 134 vs 129 ms analysed).
        """
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {MEMBERSHIP}, {CHANGE}")
        now = timezone.now()
        rows = {}
        for segment_id in refresh_order():
            segment = Segment.objects.get(pk=segment_id)
            target_sql, params = target_contacts(segment, now=now).order_by().values("pk").query.sql_with_params()
            # The sides take turns, so that a slower spell of the machine falls on all alike.
            timed = [
                (self._rolled_back(hand_written_diff, segment, target_sql, params),
                 self._rolled_back(hand_written_refresh, segment, target_sql, params),
                 self._rolled_back(refresh_segment, segment_id, now=now))
                for _ in range(self.baseline_runs)
            ]  # fmt: skip
            diff, hand, ours = (min(t[side] for t in timed) for side in range(3))
            rows[segment.slug] = {
                "ours_ms": round(ours * 1000, 1),
                "baseline_ms": round(diff * 1000, 1),
                "ratio": round(ours / diff, 2) if diff else None,
                "refresh_baseline_ms": round(hand * 1000, 1),
                "refresh_ratio": round(ours / hand, 2) if hand else None,
            }
            self.log(
                f"  {segment.slug:<40} ours {ours * 1000:9.1f} ms  hand-written diff {diff * 1000:9.1f} ms "
                f"{rows[segment.slug]['ratio']}x  refresh {hand * 1000:9.1f} ms {rows[segment.slug]['refresh_ratio']}x"
            )
        summary: dict = {"segments": rows}
        for key, name in (("ratio", "diff"), ("refresh_ratio", "refresh")):
            ratios = [ratio for r in rows.values() if (ratio := r[key])]
            median, worst = round(statistics.median(ratios), 3), max(ratios)
            summary[f"median_{key}"], summary[f"max_{key}"] = median, worst
            self.log(f"vs hand-written {name}: median ratio {median:.2f}, max {worst:.2f}")
        self.report["baseline"] = summary
        self.checkpoint(self.report)
        return summary

    def _rolled_back(self, work: Callable, *args, **kwargs) -> float:
        started = time.perf_counter()
        with transaction.atomic():
            work(*args, **kwargs)
            elapsed = time.perf_counter() - started
            transaction.set_rollback(True)
        return elapsed

    def naive_loop(self) -> dict:
        """Mautic-style: every contact, every segment, one query to decide and one to compare."""
        now = timezone.now()
        segments = [Segment.objects.get(pk=pk) for pk in refresh_order()]
        contact_ids = list(Contact.objects.order_by("?").values_list("pk", flat=True)[: self.sample])
        started = time.perf_counter()
        for contact_id in contact_ids:
            for segment in segments:
                matches = target_contacts(segment, now=now).filter(pk=contact_id).exists()
                member = Membership.objects.filter(segment=segment, contact_id=contact_id).exists()
                if matches != member:
                    raise RuntimeError(f"naive loop disagrees with stored membership of {segment.slug}")
        elapsed = time.perf_counter() - started
        per_contact = elapsed / len(contact_ids)
        extrapolated = per_contact * self.contacts
        zero_churn = self.report["phases"]["churn_0"]["seconds"]
        naive = {
            "sample_contacts": len(contact_ids),
            "sample_seconds": round(elapsed, 3),
            "ms_per_contact_all_segments": round(per_contact * 1000, 2),
            "extrapolated_seconds": round(extrapolated, 1),
            "speedup_vs_refresh_all_0pct": round(extrapolated / zero_churn, 1) if zero_churn else None,
        }
        self.report["naive_loop"] = naive
        self.checkpoint(self.report)
        self.log(f"naive loop      {per_contact * 1000:8.2f} ms/contact -> {extrapolated:,.0f}s for all; "
                 f"{naive['speedup_vs_refresh_all_0pct']}x slower than refresh_all")  # fmt: skip
        return naive

    def refresh_contacts_latency(self, rounds: int) -> dict:
        analyze(*CHURNED)
        rng = random.Random(7)
        timings, details = [], []
        drop_queued(DESCRIBE_TASK)  # queued by the builds before; only the rounds' own tasks are timed
        for _ in range(rounds):
            contact_id = rng.randint(1, self.contacts)
            # A different score every round, even when the same rounds run again on the same data.
            Contact.objects.filter(pk=contact_id).update(lead_score=(F("lead_score") + rng.randint(1, 100)) % 101)
            started = time.perf_counter()
            refresh_contacts([contact_id])
            timings.append((time.perf_counter() - started) * 1000)
            # The detail task the refresh queued after its commit, run here as a worker would.
            for queued in OrmQ.objects.order_by("id"):
                if queued.task.get("func") == DESCRIBE_TASK:
                    queued.delete()
                    started = time.perf_counter()
                    describe_changes_task(*queued.task["args"])
                    details.append((time.perf_counter() - started) * 1000)
        latency = {
            "rounds": rounds,
            "segments": len(refresh_order()),
            **_percentiles(timings),
            "details": {"tasks": len(details), **_percentiles(details)},
        }
        self.report["refresh_contacts_one_contact"] = latency
        self.checkpoint(self.report)
        self.log(f"refresh_contacts 1 contact x {latency['segments']} segments: p50 {latency['p50_ms']} ms, "
                 f"p95 {latency['p95_ms']} ms; then {len(details)} detail tasks: "
                 f"p50 {latency['details']['p50_ms']} ms, p95 {latency['details']['p95_ms']} ms")  # fmt: skip
        return latency

    def preview_counts(self) -> dict:
        analyze(*CHURNED)
        now = timezone.now()
        timings = {}
        for segment in Segment.objects.filter(slug__startswith=PREFIX, parent__isnull=True).order_by("slug"):
            if not isinstance(segment.rule, dict):
                continue
            started = time.perf_counter()
            matching_contacts(segment.rule, now=now).count()
            timings[segment.slug] = round((time.perf_counter() - started) * 1000, 1)
        values = sorted(timings.values())
        preview = {"segments": timings, "p50_ms": round(statistics.median(values), 1), "max_ms": values[-1]}
        self.report["preview_count"] = preview
        slowest = ", ".join(f"{slug} {ms:,.0f} ms" for slug, ms in sorted(timings.items(), key=lambda i: -i[1])[:3])
        self.log(f"preview count   p50 {preview['p50_ms']} ms, max {preview['max_ms']} ms ({slowest})")
        return preview

    def _history_rows(self) -> int:
        return MembershipChange.objects.count()

    @contextmanager
    def _timed(self, name: str) -> Iterator[dict]:
        phase: dict[str, Any] = {}
        started = time.perf_counter()
        yield phase
        phase["seconds"] = round(time.perf_counter() - started, 3)
        self.report["phases"][name] = phase
        self.log(f"{name:<16} {phase['seconds']:8.2f}s")


def hand_written_diff(segment: Segment, target_sql: str, params: list) -> None:
    """The first baseline: the diff alone, in a transaction of its own as a refresh runs."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"WITH {_HAND_DIFF.format(target_sql=target_sql)} SELECT count(*) FROM diff",
            [*params, *_hand_diff_params(segment)],
        )


def hand_written_refresh(segment: Segment, target_sql: str, params: list) -> None:
    """The second baseline: the same refresh as ours, by hand. The segment's lock and then, in the
    same round trip, one statement (a statement of its own, so that it reads what the lock's
    previous holder committed) writing the diff and recording it on the segment and in the daily
    rollup. The size is the stored one plus joins minus leaves: no second pass over the target."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT pg_advisory_xact_lock(%s);
            WITH {_HAND_DIFF.format(target_sql=target_sql)},
            counted AS (
                SELECT count(*) FILTER (WHERE joined) AS joins, count(*) FILTER (WHERE NOT joined) AS leaves
                FROM diff),
            recorded AS (UPDATE {SEGMENT} s SET size = s.size + c.joins - c.leaves, last_refresh_added = c.joins,
                last_refresh_removed = c.leaves, last_refresh_now = now(), last_refresh_started_at = now(),
                last_refreshed_at = clock_timestamp(), last_refresh_status = 'ok', last_refresh_error = '',
                last_refresh_duration_ms = round(1000 * extract(epoch FROM clock_timestamp() - statement_timestamp()))
                FROM counted c WHERE s.id = %s RETURNING s.id, s.size, c.joins, c.leaves),
            rolled_up AS (INSERT INTO {DAY} (segment_id, day, joins, leaves, size)
                SELECT id, current_date, joins, leaves, size FROM recorded WHERE joins + leaves > 0 {ADD_TO_DAY})
            SELECT joins + leaves FROM counted""",
            [lock_key(segment.pk), *params, *_hand_diff_params(segment), segment.pk],
        )


def _percentiles(timings: list[float]) -> dict:
    if not timings:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None}
    ordered = sorted(timings)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 2),
        "max_ms": round(ordered[-1], 2),
    }


# What the churn phases and refreshes write: analysed before the phases that time reads, as
# autovacuum does once a tenth of a table has changed (it vacuums at a fifth). After the 10% churn
# the planner otherwise still believes every contact page all-visible, and counts an
# 800,000-contact segment by an index-only scan with 888,776 heap fetches (1,046 ms) instead of
# scanning the table (150 ms once analysed). ANALYZE reads a sample; a VACUUM here would also push
# the pages those phases read out of the cache first.
CHURNED = (Contact, Activity, ActivityTally, Membership, MembershipChange)


def drop_queued(func: str) -> int:
    """Take the queued django-q tasks of `func` off the ORM broker's queue (nothing runs them here)."""
    queued = [task.pk for task in OrmQ.objects.all() if task.task.get("func") == func]
    return OrmQ.objects.filter(pk__in=queued).delete()[0]
