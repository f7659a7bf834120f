"""python manage.py bench_predictions [--plant] [--algorithm logistic]: time training and scoring
of a convert model on the contacts and activities in the database (PostgreSQL; a database whose
name contains "bench", e.g. a copy of bench_segments' data).

The generated bench data has no stage history and every contact was created when it was
generated, so `--plant` first makes it trainable, set-based: every contact is dated 600 days back,
and for each of the two cutoffs (now - 180 and now - 90 days) a lead that is not yet a customer
becomes one 10 days after the cutoff with probability 4%, or 25% if it viewed pricing in the 30
days before the cutoff (a LifecycleChange row). Then it trains (printing each step's time, the
rows, columns and validation) and scores every contact, and prints the process's peak RSS after
each. Last, it times the explanation of a page of EXPLAIN_PAGE scored contacts (their factors,
as on a segment's members page; best of EXPLAIN_RUNS, after one warm-up run).
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from devtools.measure import peak_rss_mb
from predictions.explain import explain_contacts
from predictions.models import PropensityModel, PropensityScore
from predictions.report import report_lines
from predictions.scoring import score_model
from predictions.training import queue_version, train_version

MODEL = "bench_convert"
EXPLAIN_PAGE = 50
EXPLAIN_RUNS = 5
PLANT = """
    INSERT INTO contacts_lifecyclechange (contact_id, from_stage, to_stage, changed_at)
    SELECT c.id, c.lifecycle_stage, 'customer', %(cutoff)s + interval '10 days'
    FROM contacts_contact c
    LEFT JOIN (
        SELECT DISTINCT contact_id FROM contacts_activity
        WHERE kind = 'pricing_view' AND occurred_at > %(cutoff)s - interval '30 days' AND occurred_at <= %(cutoff)s
    ) hot ON hot.contact_id = c.id
    WHERE c.lifecycle_stage NOT IN ('customer', 'evangelist')
      AND NOT EXISTS (SELECT 1 FROM contacts_lifecyclechange l WHERE l.contact_id = c.id AND l.to_stage = 'customer')
      AND random() < CASE WHEN hot.contact_id IS NULL THEN 0.04 ELSE 0.25 END"""


class Command(BaseCommand):
    help = "Benchmark training and scoring a convert model on this database's data (name must contain 'bench')."

    def add_arguments(self, parser):
        parser.add_argument("--plant", action="store_true", help="First make the generated bench data trainable")
        parser.add_argument("--algorithm", default="logistic", choices=["logistic", "boosting"])

    def handle(self, *args, plant: bool, algorithm: str, **options):
        name = connection.settings_dict["NAME"]
        if connection.vendor != "postgresql" or "bench" not in name:
            raise CommandError(f"Runs only on a PostgreSQL database whose name contains 'bench' (not {name!r}).")
        now = timezone.now()
        if plant:
            self.plant(now)
        model, _ = PropensityModel.objects.update_or_create(
            name=MODEL, defaults={"target": "convert", "horizon_days": 90, "algorithm": algorithm, "holdout": "time"}
        )
        version = queue_version(model)
        last = [time.monotonic()]
        started = last[0]

        def progress(text: str) -> None:
            now_s = time.monotonic()
            self.stdout.write(f"  [{now_s - started:7.1f} s, peak {peak_rss_mb():6.0f} MB] {text}")
            last[0] = now_s

        train_version(version, now=now, progress=progress)
        trained_s = time.monotonic() - started
        train_rss = peak_rss_mb()
        version.refresh_from_db()
        for line in report_lines(version):
            self.stdout.write(line)
        scoring_started = time.monotonic()
        summary = score_model(model, now=now)
        score_s = time.monotonic() - scoring_started
        self.stdout.write(f"train_seconds          {trained_s:.1f}")
        self.stdout.write(f"train_peak_rss_mb      {train_rss:.0f}")
        self.stdout.write(f"train_contacts         {version.counts['training']['contacts']}")
        self.stdout.write(f"feature_columns        {len(version.features['columns'])}")
        self.stdout.write(f"score_seconds          {score_s:.1f}")
        self.stdout.write(f"scored_contacts        {summary.contacts}")
        self.stdout.write(f"score_measures         {summary.measures}")
        self.stdout.write(f"peak_rss_mb            {peak_rss_mb():.0f}")
        self.stdout.write(f"explain_page_ms        {self.explain_page_ms(model):.0f} ({EXPLAIN_PAGE} contacts)")

    def explain_page_ms(self, model: PropensityModel) -> float:
        page = list(PropensityScore.objects.filter(model=model).order_by("contact_id")[:EXPLAIN_PAGE])
        ids = [score.contact_id for score in page]
        explain_contacts(model, ids)
        runs = []
        for _ in range(EXPLAIN_RUNS):
            started = time.monotonic()
            explain_contacts(model, ids)
            runs.append(time.monotonic() - started)
        return 1000 * min(runs)

    def plant(self, now) -> None:
        started = time.monotonic()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE contacts_contact SET created_at = %s", [now - timedelta(days=600)])
            for days in (180, 90):
                cursor.execute(PLANT, {"cutoff": now - timedelta(days=days)})
                self.stdout.write(f"planted {cursor.rowcount} conversions after the cutoff {days} days back")
            cursor.execute("ANALYZE contacts_contact")
            cursor.execute("ANALYZE contacts_lifecyclechange")
        self.stdout.write(f"plant_seconds          {time.monotonic() - started:.1f}")
