"""Segments, their stored membership and the history of every join and leave."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from contacts.models import Contact


class SegmentKind(models.TextChoices):
    DYNAMIC = "dynamic", "Dynamic (rule)"
    STATIC = "static", "Static list"
    SUPPRESSION = "suppression", "Suppression (rule)"
    SUPPRESSION_LIST = "suppression_list", "Suppression list (static)"


# Members added and removed by hand (or uploaded), never by a rule: a static list, and a static
# suppression list (an opt-out or legal-hold list). Refreshes leave them alone.
STATIC_KINDS = (SegmentKind.STATIC, SegmentKind.SUPPRESSION_LIST)
# Members kept out of activations and automations (global ones out of all of them).
SUPPRESSION_KINDS = (SegmentKind.SUPPRESSION, SegmentKind.SUPPRESSION_LIST)


class SegmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


class SegmentCategory(models.TextChoices):
    PERSONA = "persona", "Persona"
    PRODUCT_LINE = "product_line", "Product line"
    LIFECYCLE = "lifecycle", "Lifecycle"
    ENGAGEMENT = "engagement", "Engagement"
    INTEREST = "interest", "Interest"
    ACCOUNT = "account", "Account-based"
    VALUE = "value", "Value"
    SUPPRESSION = "suppression", "Suppression"
    OTHER = "other", "Other"


class RefreshStatus(models.TextChoices):
    NEVER = "never", "Never refreshed"
    OK = "ok", "OK"
    FAILED = "failed", "Failed"


class SegmentQuerySet(models.QuerySet["Segment", "Segment"]):
    def active(self) -> SegmentQuerySet:
        return self.filter(status=SegmentStatus.ACTIVE)

    def rule_based(self) -> SegmentQuerySet:
        return self.exclude(kind__in=STATIC_KINDS)

    def static(self) -> SegmentQuerySet:
        """Segments whose members are added and removed by hand: static lists and suppression lists."""
        return self.filter(kind__in=STATIC_KINDS)

    def suppressions(self) -> SegmentQuerySet:
        return self.filter(kind__in=SUPPRESSION_KINDS)

    def global_suppressions(self) -> SegmentQuerySet:
        return self.filter(kind__in=SUPPRESSION_KINDS, is_global=True, status=SegmentStatus.ACTIVE)


class Segment(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True, help_text="What the segment is for and who uses it")
    kind = models.CharField(max_length=20, choices=SegmentKind.choices, default=SegmentKind.DYNAMIC)
    is_global = models.BooleanField(
        "global suppression", default=False, help_text="Suppression only: keep members out of every activation"
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="Members of this segment are always members of the parent",
    )
    rule = models.JSONField(
        null=True, blank=True, help_text="Rule in the segment rule language (dynamic and suppression)"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_segments"
    )
    backup_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="backed_up_segments",
        help_text="Stands in for the owner: gets review reminders when the owner is inactive",
    )
    category = models.CharField(max_length=20, choices=SegmentCategory.choices, default=SegmentCategory.OTHER)
    status = models.CharField(max_length=20, choices=SegmentStatus.choices, default=SegmentStatus.ACTIVE)
    requires_approval = models.BooleanField(
        null=True,
        blank=True,
        default=None,
        help_text="Rule edits wait as drafts until another Operations user approves them. "
        "Empty: only while the segment feeds an enabled activation or automation",
    )
    references = models.ManyToManyField(
        "self", symmetrical=False, through="SegmentReference", related_name="referenced_by", blank=True
    )

    size = models.PositiveIntegerField(default=0)
    last_refreshed_at = models.DateTimeField(null=True, blank=True, help_text="When the last refresh finished")
    last_refresh_now = models.DateTimeField(
        null=True, blank=True, help_text="The `now` relative dates were measured from in the last refresh"
    )
    last_refresh_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_refresh_added = models.PositiveIntegerField(default=0)
    last_refresh_removed = models.PositiveIntegerField(default=0)
    last_refresh_status = models.CharField(max_length=10, choices=RefreshStatus.choices, default=RefreshStatus.NEVER)
    last_refresh_error = models.TextField(blank=True)
    last_refresh_started_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Wall-clock start of the last successful full refresh; unset until the first build",
    )
    # The full refresh running now, if any (segments/watchdog.py): written by refreshes only.
    refresh_running_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Start of the full refresh running now; empty when none is"
    )
    refresh_heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="The running refresh's last sign of life (renewed every RUN_HEARTBEAT_SECONDS)",
    )
    refresh_worker = models.CharField(
        max_length=200, blank=True, editable=False, help_text="host:pid of the worker running (or that last ran) it"
    )
    refresh_session = models.CharField(
        max_length=100,
        blank=True,
        editable=False,
        help_text="PostgreSQL: that worker's database session (pid@start); gone means the worker died",
    )
    refresh_failures = models.PositiveIntegerField(default=0, editable=False, help_text="Failed refreshes in a row")
    refresh_retry_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the failed refresh is tried again (with back-off)"
    )
    # A refresh task queued and not started yet (segments.tasks.queue_refresh): another request
    # for the segment meanwhile answers with the same task instead of queueing a second one.
    refresh_queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    refresh_task_id = models.CharField(max_length=32, blank=True, editable=False)
    percent_thresholds = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="top/bottom_percent thresholds measured by the last full refresh, by condition; "
        "refreshes of a few contacts and explanations of this segment use them (segments/rules/thresholds.py)",
    )
    rule_edited_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Set when the rule or parent changes; the next full refresh records its changes as 'rule edited'",
    )

    last_api_read_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Last read of the segment or its members through the API (kept to the hour)",
    )

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SegmentQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["kind", "status"], name="segment_kind_status_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(is_global=False) | models.Q(kind__in=["suppression", "suppression_list"]),
                name="segment_only_suppressions_are_global",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_static(self) -> bool:
        """Members added and removed by hand (or uploaded): a static list or a suppression list."""
        return self.kind in STATIC_KINDS

    @property
    def is_rule_based(self) -> bool:
        return not self.is_static

    @property
    def is_suppression(self) -> bool:
        return self.kind in SUPPRESSION_KINDS

    @property
    def refresh_running(self) -> bool:
        return self.refresh_running_since is not None


class SegmentReference(models.Model):
    """`in_segment` references found in a segment's rule, kept in step with the rule on save.

    PROTECT on the referenced side is what refuses deleting a segment others read.
    """

    from_segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="outgoing_references")
    to_segment = models.ForeignKey(Segment, on_delete=models.PROTECT, related_name="incoming_references")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["from_segment", "to_segment"], name="segment_reference_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.from_segment} reads {self.to_segment}"


class Membership(models.Model):
    # No index of their own: membership_segment_contact_unique and membership_contact_idx lead with them.
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "contact"], name="membership_segment_contact_unique"),
        ]
        indexes = [
            # Contact page: which segments is this contact in.
            models.Index(fields=["contact", "segment"], name="membership_contact_idx"),
        ]

    def __str__(self) -> str:
        return f"contact {self.contact_id} in {self.segment_id}"


class ChangeKind(models.TextChoices):
    JOIN = "join", "Joined"
    LEAVE = "leave", "Left"


class ChangeReason(models.TextChoices):
    RULE = "rule", "Rule matched / stopped matching"
    PARENT = "parent", "Parent segment membership changed"
    MANUAL = "manual", "Added or removed by hand"
    RULE_EDITED = "rule_edited", "Segment rule edited"
    INITIAL_BUILD = "initial_build", "Initial build"
    MERGE = "merge", "Contacts merged (or the merge undone)"


class MembershipChange(models.Model):
    # No index of their own: change_segment_time_idx and change_contact_time_idx lead with them.
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="changes", db_index=False)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="membership_changes", db_index=False)
    kind = models.CharField(max_length=5, choices=ChangeKind.choices)
    reason = models.CharField(max_length=20, choices=ChangeReason.choices)
    changed_at = models.DateTimeField(default=timezone.now)
    detail = models.JSONField(null=True, blank=True, help_text="Explainer output for the change, where cheap")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(fields=["segment", "changed_at"], name="change_segment_time_idx"),
            models.Index(fields=["contact", "changed_at"], name="change_contact_time_idx"),
            # Each member's history in order, for the analytics' membership intervals (migration 0020).
            models.Index(
                fields=["segment", "contact", "changed_at", "id"], include=("kind",), name="change_member_time_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"contact {self.contact_id} {self.kind} {self.segment_id} ({self.reason})"


class RuleVersion(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="rule_versions")
    old_rule = models.JSONField(null=True, blank=True)
    new_rule = models.JSONField(null=True, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)
    note = models.TextField(blank=True, help_text="Why the rule changed, in the author's words")
    size_before = models.PositiveIntegerField(null=True, blank=True, help_text="Members when the rule changed")
    size_after = models.PositiveIntegerField(
        null=True, blank=True, help_text="Members after the first full refresh under the new rule (empty until then)"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who approved the draft this version published (segments that require approval)",
    )

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.segment} rule changed {self.changed_at:%Y-%m-%d %H:%M}"


class RefreshFailure(models.Model):
    """A failed refresh, kept so the segment page can mark it on the size chart (the segment itself
    only holds its last refresh's status)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="failure_log")
    failed_at = models.DateTimeField(default=timezone.now)
    error = models.TextField()

    class Meta:
        ordering = ["-failed_at"]
        indexes = [models.Index(fields=["segment", "failed_at"], name="refresh_failure_time_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id} failed at {self.failed_at:%Y-%m-%d %H:%M}"


class SegmentDay(models.Model):
    """Joins, leaves and end-of-day size of one segment on one day (project time zone).

    A rollup of MembershipChange kept by the membership writer (segments/membership.py), so the
    segment page and the overview chart 60 days without grouping the change log on every view.
    """

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    joins = models.PositiveIntegerField(default=0)
    leaves = models.PositiveIntegerField(default=0)
    size = models.PositiveIntegerField(help_text="Members at the end of the day (after its last change)")

    class Meta:
        ordering = ["segment", "day"]
        constraints = [models.UniqueConstraint(fields=["segment", "day"], name="segment_day_unique")]

    def __str__(self) -> str:
        return f"{self.segment_id} {self.day}: +{self.joins} -{self.leaves} = {self.size}"


# --- Segment analytics (segments/analytics/): rollups of outcomes credited at the time they happened ---


class AnalyticsGrain(models.TextChoices):
    DAY = "day", "Day"
    WEEK = "week", "Week (ISO, from Monday)"
    MONTH = "month", "Month"
    QUARTER = "quarter", "Quarter"


class SegmentStat(models.Model):
    """What one segment's members did over one calendar period, credited by point-in-time membership.

    `segment` null is the whole database (every contact from its creation), the baseline segments
    are compared with. Written by segments/analytics/rollup.py; rates and intervals are derived on
    reading (segments/analytics/measures.py).
    """

    segment = models.ForeignKey(Segment, null=True, on_delete=models.CASCADE, related_name="stats")
    grain = models.CharField(max_length=8, choices=AnalyticsGrain.choices)
    period_start = models.DateField()
    members_start = models.PositiveIntegerField(help_text="Members at the end of the day before the period")
    members_end = models.PositiveIntegerField(help_text="Members at the end of the period's last day")
    members_during = models.PositiveIntegerField(
        help_text="Members at the start (the day before's end) and contacts who joined during the period"
    )
    avg_members = models.FloatField(help_text="Mean over the period's days of (members at the day's start + end) / 2")
    engaged = models.PositiveIntegerField(
        help_text="Members with an open, click, visit, download or form while members"
    )
    opens = models.PositiveIntegerField()
    clicks = models.PositiveIntegerField()
    converted = models.PositiveIntegerField(help_text="Members who became customers or won a deal while members")
    won_deals = models.PositiveIntegerField()
    won_amount = models.DecimalField(max_digits=18, decimal_places=2)
    purchases = models.PositiveIntegerField()
    purchase_value = models.DecimalField(max_digits=18, decimal_places=2)
    revenue_sq = models.FloatField(help_text="Sum over members of the square of each one's revenue (its spread)")
    deals_created = models.PositiveIntegerField()
    pipeline_created = models.DecimalField(max_digits=18, decimal_places=2)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["segment", "grain", "period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "grain", "period_start"],
                condition=models.Q(segment__isnull=False),
                name="segment_stat_unique",
            ),
            models.UniqueConstraint(
                fields=["grain", "period_start"], condition=models.Q(segment__isnull=True), name="database_stat_unique"
            ),
        ]
        indexes = [models.Index(fields=["grain", "period_start"], name="segment_stat_period_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id or 'database'} {self.grain} {self.period_start}"


class SegmentResponse(models.Model):
    """Members who responded through one channel (activity kind group) or campaign in a period."""

    segment = models.ForeignKey(Segment, null=True, on_delete=models.CASCADE, related_name="responses")
    grain = models.CharField(max_length=8, choices=AnalyticsGrain.choices)
    period_start = models.DateField()
    channel = models.CharField(max_length=16, blank=True, help_text="Channel, or blank on a campaign's row")
    campaign = models.CharField(max_length=100, blank=True, help_text="Campaign, or blank on a channel's row")
    responders = models.PositiveIntegerField(help_text="Members with at least one such activity while members")
    activities = models.PositiveIntegerField()
    converted = models.PositiveIntegerField(help_text="Responders who also converted in the period")

    class Meta:
        indexes = [models.Index(fields=["grain", "period_start", "segment"], name="segment_response_period_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id or 'database'} {self.grain} {self.period_start} {self.channel or self.campaign}"


class SegmentStageStat(models.Model):
    """Lifecycle progress of a segment's members in a period, by the stage reached."""

    segment = models.ForeignKey(Segment, null=True, on_delete=models.CASCADE, related_name="stage_stats")
    grain = models.CharField(max_length=8, choices=AnalyticsGrain.choices)
    period_start = models.DateField()
    stage = models.CharField(max_length=20)
    reached = models.PositiveIntegerField(help_text="Members who moved to this stage while members")
    converted = models.PositiveIntegerField(help_text="Members who moved to this stage or won a deal")
    from_previous = models.PositiveIntegerField(help_text="Moves from the funnel's previous stage straight to this one")

    class Meta:
        indexes = [models.Index(fields=["grain", "period_start", "segment"], name="segment_stage_period_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id or 'database'} {self.grain} {self.period_start} {self.stage}"


class SegmentChangeStat(models.Model):
    """Joins and leaves of a segment in a period, by reason (from MembershipChange)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="change_stats")
    grain = models.CharField(max_length=8, choices=AnalyticsGrain.choices)
    period_start = models.DateField()
    kind = models.CharField(max_length=5, choices=ChangeKind.choices)
    reason = models.CharField(max_length=20, choices=ChangeReason.choices)
    n = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["grain", "period_start", "segment"], name="segment_change_period_idx")]

    def __str__(self) -> str:
        return f"{self.segment_id} {self.grain} {self.period_start} {self.kind} {self.reason}: {self.n}"


class AnalyticsState(models.Model):
    """Where the incremental analytics update left off (one row): the last day computed and its last run."""

    computed_through = models.DateField(null=True, blank=True, help_text="Last day the rollups cover")
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run_seconds = models.FloatField(null=True, blank=True)
    last_run_periods = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"analytics through {self.computed_through}"


class AnalyticsSource(models.TextChoices):
    ACTIVITY = "activity", "Activity"
    LIFECYCLE = "lifecycle", "Lifecycle change"
    DEAL = "deal", "Deal"
    MEMBERSHIP = "membership", "Membership change"


class AnalyticsDirtyHour(models.Model):
    """An hour (UTC) holding a time of a source row that was inserted or updated (old and new
    values) since the analytics update last read it (segments/analytics/updates.py). Deletes are
    not recorded: deleting never rewrites analytics history (migration 0019).

    Written by database triggers on the four source tables, in the transaction that changed the row,
    so every write path (ORM, bulk ingest, raw SQL) records it, and a row is seen once committed,
    whatever the order of commits (migration 0018). The update claims the waiting rows, recomputes
    the local days they touch, then deletes the rows it claimed.
    """

    source = models.CharField(max_length=10, choices=AnalyticsSource.choices)
    hour = models.DateTimeField(help_text="The changed time, truncated to the hour in UTC")
    # Membership changes only, no foreign key: a deleted segment's changes dirty nothing.
    segment_id = models.BigIntegerField(null=True, blank=True)
    claimed = models.BooleanField(default=False, help_text="Being read by an update")

    class Meta:
        indexes = [
            # SQLite's row triggers look here before adding an hour already waiting.
            models.Index(
                fields=["source", "hour", "segment_id"],
                condition=models.Q(claimed=False),
                name="analytics_dirty_waiting",
            ),
        ]

    def __str__(self) -> str:
        segment = f" (segment {self.segment_id})" if self.segment_id else ""
        return f"{self.source} {self.hour:%Y-%m-%d %H}:00 UTC{segment}"


# --- Governance (segments/governance/): review cadences and the reviews themselves ---


class ReviewKind(models.TextChoices):
    METRICS = "metrics", "Metrics review"
    BOUNDARIES = "boundaries", "Boundary adjustment"
    STRATEGY = "strategy", "Strategy reassessment"


class CadenceUnit(models.TextChoices):
    DAYS = "days", "days"
    MONTHS = "months", "months"


MAX_CADENCE: dict[str, int] = {CadenceUnit.DAYS: 1096, CadenceUnit.MONTHS: 36}  # three years at most


class ReviewPolicy(models.Model):
    """How often one kind of review is due: a default for a category, or an override for one segment.

    A segment's cadence for a kind is its own row, else its category's, else the strategy's default
    (segments/governance/cadence.py). A policy can be switched off for a segment, with a reason.
    """

    segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.CASCADE, related_name="policies")
    category = models.CharField(max_length=20, choices=SegmentCategory.choices, blank=True)
    kind = models.CharField(max_length=20, choices=ReviewKind.choices)
    every = models.IntegerField(default=1, help_text="How many days or months between two reviews of this kind")
    unit = models.CharField(max_length=10, choices=CadenceUnit.choices, default=CadenceUnit.MONTHS)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True, help_text="Why reviews of this kind are off")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "review policies"
        ordering = ["category", "segment", "kind"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(segment__isnull=True) & ~models.Q(category=""))
                | (models.Q(segment__isnull=False) & models.Q(category="")),
                name="review_policy_segment_or_category",
            ),
            models.UniqueConstraint(
                fields=["segment", "kind"], condition=models.Q(segment__isnull=False), name="review_policy_segment_kind"
            ),
            models.UniqueConstraint(
                fields=["category", "kind"],
                condition=models.Q(segment__isnull=True),
                name="review_policy_category_kind",
            ),
        ]

    def __str__(self) -> str:
        scope = self.segment.name if self.segment else self.get_category_display()
        cadence = f"every {self.every} {self.unit}" if self.enabled else "off"
        return f"{scope}: {self.get_kind_display()} {cadence}"

    def clean(self) -> None:
        """Refuse a cadence that could never come due, a scope that is not one of the two, and a
        switched-off policy without its reason; each message names its field."""
        errors: dict[str, str] = {}
        limit = MAX_CADENCE.get(self.unit)  # an unknown unit is refused by the field's choices
        if limit is not None and (not isinstance(self.every, int) or not 1 <= self.every <= limit):
            errors["every"] = f"A cadence is 1 to {limit} {self.unit}; got {self.every}."
        if (self.segment_id is None) == (not self.category):
            errors["category"] = (
                "A policy is either a category's default or one segment's override: set one of the two."
            )
        if not self.enabled and not self.disabled_reason.strip():
            errors["disabled_reason"] = "Say why reviews of this kind are switched off."
        if errors:
            raise ValidationError(errors)


class ReviewDecision(models.TextChoices):
    KEEP = "keep", "Keep as is"
    ADJUST = "adjust", "Adjust the rule"
    MERGE = "merge", "Merge into another segment"
    RETIRE = "retire", "Retire (archive)"


class Review(models.Model):
    """A completed review: who looked at the segment, when, what they decided and the figures they saw.

    Written once by segments/governance/reviews.py and never changed (save refuses an update).
    """

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="reviews")
    kind = models.CharField(max_length=20, choices=ReviewKind.choices)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="segment_reviews"
    )
    recorded_by = models.CharField(max_length=200, help_text="The person or API key that recorded the review")
    reviewed_at = models.DateTimeField(default=timezone.now)
    decision = models.CharField(max_length=10, choices=ReviewDecision.choices)
    notes = models.TextField(blank=True)
    snapshot = models.JSONField(default=dict, help_text="The segment's figures at review time")
    rule_version = models.ForeignKey(
        RuleVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="adjust: the rule it made",
    )
    merged_into = models.ForeignKey(
        Segment, null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_reviews"
    )

    class Meta:
        ordering = ["-reviewed_at", "-id"]
        indexes = [models.Index(fields=["segment", "kind", "reviewed_at"], name="review_segment_kind_idx")]

    def __str__(self) -> str:
        return f"{self.segment} {self.get_kind_display()} {self.reviewed_at:%Y-%m-%d}: {self.decision}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("A review is immutable once recorded; record a new one instead.")
        super().save(*args, **kwargs)


class SegmentHealth(models.Model):
    """The flags the daily governance job found costly to compute (membership overlap, property
    fill rates, size history, usage), each with its evidence; the review and owner flags are read
    live on the governance page (segments/governance/health.py)."""

    segment = models.OneToOneField(Segment, on_delete=models.CASCADE, related_name="health")
    flags = models.JSONField(default=list, help_text='[{"code": ..., "label": ..., "evidence": ...}]')
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "segment health"

    def __str__(self) -> str:
        return f"{self.segment_id}: {len(self.flags)} flag(s) at {self.checked_at:%Y-%m-%d %H:%M}"


class SuppressionHold(models.Model):
    """Keeps a merged contact in a suppression segment whatever its rule says (contacts/merging.py).

    A merge must never let a suppressed person out: the survivor of a merge stays in every
    suppression segment either contact was in, even when the values it kept no longer match the
    rule, until the merge is undone or an operator releases the hold. The refresh reads the holds
    as part of a suppression segment's target (segments/targets.py).
    """

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="holds")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="suppression_holds")
    merge = models.ForeignKey("contacts.ContactMerge", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["segment", "contact", "merge"], name="suppression_hold_unique"),
        ]

    def __str__(self) -> str:
        return f"contact {self.contact_id} held in {self.segment_id} by merge {self.merge_id}"


class DraftStatus(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPROVED = "approved", "Approved and published"
    REJECTED = "rejected", "Rejected"


class RuleDraft(models.Model):
    """A rule edit of a segment that requires approval, held while the live rule stays in force
    (segments/governance/approval.py). Approval publishes it as a RuleVersion; a draft made
    against a live rule that has changed since (`base_version`) must be rebased first."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="drafts")
    rule = models.JSONField(help_text="The proposed rule")
    base_rule = models.JSONField(null=True, blank=True, help_text="The live rule the draft was made against")
    base_version = models.ForeignKey(
        RuleVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The live rule's version when the draft was made (or last rebased)",
    )
    note = models.TextField(help_text="Why the rule changes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="rule_drafts"
    )
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=DraftStatus.choices, default=DraftStatus.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    version = models.ForeignKey(
        RuleVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="What it published"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "segment"], name="rule_draft_status_idx")]

    def __str__(self) -> str:
        return f"Draft #{self.pk} of {self.segment}"


# --- Static list edits from the contact list (segments/static.py) ---


class ListEditOperation(models.TextChoices):
    ADD = "add", "Add to the list"
    REMOVE = "remove", "Remove from the list"


class ListEditStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ListEdit(models.Model):
    """A large selection of contacts added to or removed from a static list in the background.

    The selection is kept as it was when asked for (ListEditContact rows, written in one statement)
    and applied batch by batch by a django-q task, which records its progress here.
    """

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="list_edits")
    operation = models.CharField(max_length=10, choices=ListEditOperation.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=500, help_text="Where the selection came from: the contact list's filters")
    status = models.CharField(max_length=10, choices=ListEditStatus.choices, default=ListEditStatus.QUEUED)
    total = models.PositiveIntegerField(help_text="Contacts selected")
    done = models.PositiveIntegerField(default=0, help_text="Contacts of the selection handled so far")
    added = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_operation_display()} {self.segment}: {self.done:,} of {self.total:,} ({self.status})"

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(100 * self.done / self.total)


class ListEditContact(models.Model):
    """One contact of a ListEdit's selection; the rows go once the edit is done.

    The contact is a plain id, not a foreign key: deleting or erasing a contact must not pay for a
    cascade into these short-lived rows, and the task only ever adds contacts that still exist.
    """

    edit = models.ForeignKey(ListEdit, on_delete=models.CASCADE, related_name="selection")
    contact_id = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["edit", "contact_id"], name="list_edit_contact_unique")]

    def __str__(self) -> str:
        return f"contact {self.contact_id} of list edit {self.edit_id}"


class ReminderStage(models.TextChoices):
    REMIND = "remind", "Reminder"
    ESCALATE = "escalate", "Escalation"


class ReviewReminder(models.Model):
    """A review reminder (to the owner) or escalation (to the backup owner and Operations) for one
    review period: at most one per segment, kind, due date, stage and recipient (the constraint is
    what makes two workers send it once). The row is the in-app notification; `emailed_at` records
    the e-mail (segments/governance/reminders.py)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="review_reminders")
    kind = models.CharField(max_length=20, choices=ReviewKind.choices)
    due = models.DateField(help_text="The due date of the review period it is about")
    stage = models.CharField(max_length=10, choices=ReminderStage.choices)
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_reminders")
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    email_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    email_claim = models.CharField(max_length=40, blank=True, editable=False, help_text="The worker sending it")
    emailed_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "kind", "due", "stage", "recipient"], name="review_reminder_once_per_period"
            ),
        ]
        indexes = [
            # send_reminders(): the e-mails not sent yet.
            models.Index(fields=["emailed_at"], name="review_reminder_unsent_idx", condition=models.Q(emailed_at=None)),
            models.Index(fields=["recipient", "read_at"], name="review_reminder_inbox_idx"),
        ]

    def __str__(self) -> str:
        return self.message
