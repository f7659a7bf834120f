"""The SQL that computes ContactMetrics, built for one database dialect and one scoring model.

Formulas (the as-of time is `T`; every activity with occurred_at > T is ignored):

- decay(a) = 0.5 ** (age_days / half_life_days), age_days = T - occurred_at in fractional days.
- engagement_score = round(Σ weight(kind) * decay, 6) over all activities up to T.
- engagement_percentile = 100 * cume_dist: the share of contacts whose score is <= this one.
- engagement_level, with N contacts, `greater` / `smaller` the number of contacts with a strictly
  greater / smaller score, top = highly_engaged_top_percent, bottom = disengaged_bottom_percent:
  score 0 -> disengaged; 100 * greater < top * N -> highly engaged (the same test as the rule
  operator `top_percent`); 100 * smaller < bottom * N -> disengaged; else moderately engaged.
- email_engagement_level: email points = opens + 2 * clicks within email_window_days;
  >= email_highly_threshold -> highly, >= email_moderately_threshold -> moderately, else disengaged.
- web_activity_level: site visits + page views within web_window_days; >= web_active_threshold
  -> active, >= web_engaged_threshold -> engaged, else dormant.
- Topics: per (contact, lower(topic)) the sum of decay; share = 100 * topic sum / contact's sum of
  all topic sums, rounded to 0.1; the top 5 are stored strongest first (ties by name).
- Products: page views, pricing views, feature comparisons and demo requests naming a product;
  intent = Σ weight(kind) * decay, rounded to 0.01; strong = a pricing view of that product
  within strong_intent_days. Top 5 stored; strong_intent_products lists every strong one.
- RFV over the kinds in rfv_kinds: recency_days = whole days from T to the latest one;
  frequency = how many within rfv_frequency_window_days (0: all time); monetary = Σ value of
  purchases. Among contacts with at least one counted activity (M of them), each score is
  ceil(5 * cume_dist) with ties equal: recency ordered by days descending (most recent -> 5),
  frequency and monetary ascending. Contacts without a counted activity get no scores.
- rfv_cell (R, F, V the scores), first match wins: champions R>=4 F>=4 V>=4; loyal R>=3 F>=4;
  new R>=4 F<=2; promising R>=4 (F=3); needs_attention R=3 (F<=3); at_risk R<=2 F>=3;
  hibernating R<=2 F<=2.
- Velocity: recent = activities with T-30d <= occurred_at <= T, previous = T-60d <= occurred_at
  < T-30d; velocity_ratio = recent / previous (null when previous is 0); accelerating when
  recent >= velocity_min_recent and recent >= velocity_min_ratio * previous.
- recently_disengaged: active 60–90 days ago (an activity with T-90d <= occurred_at <= T-60d),
  engaged then (the engagement level computed as of T-60d, from activities up to T-60d decayed
  to T-60d and ranked among all contacts with the same cut-offs, was highly or moderately
  engaged), and no activity in the last 30 days (recent = 0).
- tenure_days = T's date - customer_since (null before it or without it); days_in_stage = whole
  days since lifecycle_changed_at (0 if later than T); days_to_renewal = renewal_date - T's date
  (negative when overdue); open_tickets = max(0, tickets opened - tickets closed).
- expansion_readiness (customers and evangelists only, else null), clamped to 0..100, 0.1:
  0.4 * product_adoption + 0.4 * engagement_percentile + 0.2 * (100 * min(tenure_days, 365) / 365)
  - 10 * open_tickets.

A full run selects every contact's row (`full_select`) and replaces the stored rows with them
(contacts/metrics/replace.py). On PostgreSQL, short topic and product vocabularies are summed in
the per-contact aggregate (contacts/metrics/vocabulary.py), and a run that owns its transaction
computes the raw measures in two halves at once (`part_select`), then ranks them together
(`ranked_select`, contacts/metrics/parallel.py); the rows are the same as `full_select`'s.

An incremental run (some contact ids, after ingest) upserts those
contacts' raw measures (aggregating only their activities), then ranks them against every stored
row; the other contacts' rows are read, not rewritten, so their percentiles and scores catch up at
the next full run.

Incremental ranking on PostgreSQL (`bucket_counts`) needs no sort of the stored rows: every count
is "how many stored values are strictly below v" for some rank key (negated for "above", e.g.
score_gt = #{-score < -v}). The touched contacts' distinct values of a key, ascending, are
thresholds A[1..k]; one scan of the stored rows puts each value in bucket width_bucket(value, A)
= #{j : A[j] <= value} per key (GROUPING SETS, one hash table per key), and #{value < A[i]} is the
sum of buckets 0..i-1. Bucket i is never empty (the touched row holding A[i] is stored), so a
running sum read at bucket i gives it. SQLite (small installations) ranks with the window counts.
"""

from __future__ import annotations

from contacts.metrics import vocabulary as pivot
from contacts.metrics.dialect import Dialect
from contacts.metrics.vocabulary import TOP_N, Vocabulary
from contacts.models import ActivityKind, ScoringModel

PAST_DAYS = 60
LAPSE_DAYS = 90
VELOCITY_DAYS = 30
PRODUCT_KINDS = (
    ActivityKind.PAGE_VIEW,
    ActivityKind.PRICING_VIEW,
    ActivityKind.FEATURE_COMPARISON,
    ActivityKind.DEMO_REQUEST,
)

# Columns written from `base` (raw per-contact aggregates) and from the ranking step.
BASE_COLUMNS = [
    "contact_id",
    "as_of",
    "activity_count",
    "last_activity_at",
    "engagement_score",
    "past_engagement_score",
    "email_engagement_level",
    "web_activity_level",
    "topics",
    "top_topics",
    "topic_shares",
    "top_topic",
    "top_topic_share",
    "products",
    "product_interest",
    "top_product",
    "top_product_intent",
    "strong_intent",
    "strong_intent_products",
    "recency_days",
    "frequency",
    "monetary",
    "recent_activity_count",
    "active_60_to_90_days_ago",
    "previous_activity_count",
    "velocity_ratio",
    "is_accelerating",
    "tenure_days",
    "days_in_stage",
    "days_to_renewal",
    "open_tickets",
]
RANKED_COLUMNS = [
    "engagement_percentile",
    "engagement_level",
    "recently_disengaged",
    "r_score",
    "f_score",
    "v_score",
    "rfv_cell",
    "expansion_readiness",
]
PLACEHOLDERS = {
    "engagement_percentile": "0",
    "engagement_level": "'disengaged'",
    "recently_disengaged": "FALSE",
    "r_score": "NULL",
    "f_score": "NULL",
    "v_score": "NULL",
    "rfv_cell": "''",
    "expansion_readiness": "NULL",
}
TABLE = "contacts_contactmetrics"


def _in_list(prefix: str, values: list[str], params: dict) -> str:
    names = []
    for index, value in enumerate(values):
        params[f"{prefix}{index}"] = value
        names.append(f"%({prefix}{index})s")
    return ", ".join(names)


def _weight_case(model: ScoringModel, params: dict) -> str:
    branches = []
    for index, kind in enumerate(ActivityKind.values):
        params[f"kind{index}"] = kind
        params[f"weight{index}"] = model.weight_of(kind)
        branches.append(f"WHEN %(kind{index})s THEN CAST(%(weight{index})s AS DOUBLE PRECISION)")
    return f"(CASE a.kind {' '.join(branches)} ELSE 0.0 END)"


def _windowed(
    d: Dialect,
    source: str,
    *,
    lists: dict[str, str],
    objects: dict[str, tuple[str, str]],
    firsts: dict[str, str],
    where: str,
) -> str:
    """SQLite: the per-contact lists as window aggregates over each contact's `source` rows in `rn`
    order, one row kept per contact (no ORDER BY inside aggregates before SQLite 3.44)."""
    frame = "PARTITION BY contact_id ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
    columns = [f"{d.json_array_agg}({value}) OVER w AS {name}" for name, value in lists.items()]
    columns += [f"{d.json_object_agg}({key}, {value}) OVER w AS {name}" for name, (key, value) in objects.items()]
    columns += [f"FIRST_VALUE({value}) OVER w AS {name}" for name, value in firsts.items()]
    names = ", ".join([*lists, *objects, *firsts])
    return f"""SELECT contact_id, {names} FROM (
            SELECT contact_id, ROW_NUMBER() OVER (PARTITION BY contact_id ORDER BY rn) AS list_pos, {", ".join(columns)}
            FROM {source} WHERE {where} WINDOW w AS ({frame})
        ) lists WHERE list_pos = 1"""


def _top_per_contact(
    d: Dialect,
    source: str,
    *,
    columns: list[str],
    lists: dict[str, str],
    objects: dict[str, tuple[str, str]],
    firsts: dict[str, str],
) -> str:
    """One row per contact from `source` (one row per contact and item, `rn` 1 = strongest) about
    its TOP_N strongest items: each of `lists` as a JSON list in `rn` order, each of `objects` as
    a JSON object of key: value, each of `firsts` for the strongest item. The expressions name
    the `columns` of an item as {column}.

    PostgreSQL turns the strongest items into columns (topic1, share1, topic2, ...) with one plain
    GROUP BY over rows already in contact order, then builds the lists from them: no per-contact
    sort, which an ordered aggregate (jsonb_agg(... ORDER BY rn)) costs on every contact."""
    plain = {column: column for column in columns}
    if not d.postgres:
        return _windowed(
            d,
            source,
            lists={name: value.format(**plain) for name, value in lists.items()},
            objects={name: (key.format(**plain), value.format(**plain)) for name, (key, value) in objects.items()},
            firsts={name: value.format(**plain) for name, value in firsts.items()},
            where=f"rn <= {TOP_N}",
        )

    def at(expression: str, position: int) -> str:
        return expression.format(**{column: f"{column}{position}" for column in columns})

    positions = range(1, TOP_N + 1)
    pivots = [f"MAX({column}) FILTER (WHERE rn = {i}) AS {column}{i}" for i in positions for column in columns]
    pivots += [
        f"jsonb_object_agg({key.format(**plain)}, {value.format(**plain)}) AS {name}"
        for name, (key, value) in objects.items()
    ]

    def listed(value: str) -> str:
        items = ", ".join(f"CASE WHEN n >= {i} THEN {at(value, i)} END" for i in positions)
        return f"to_jsonb(ARRAY_REMOVE(ARRAY[{items}], NULL))"

    built = [f"{listed(value)} AS {name}" for name, value in lists.items()]
    built += [f"{at(value, 1)} AS {name}" for name, value in firsts.items()]
    return f"""SELECT contact_id, {", ".join([*built, *objects])} FROM (
            SELECT contact_id, COUNT(*) AS n, {", ".join(pivots)}
            FROM {source} WHERE rn <= {TOP_N} GROUP BY contact_id
        ) pivoted"""


def _all_per_contact(d: Dialect, source: str, *, name: str, value: str, where: str) -> str:
    """One row per contact with `source` rows passing `where` (few): `name`, the JSON list of their
    `value` in `rn` order."""
    if not d.postgres:
        return _windowed(d, source, lists={name: value}, objects={}, firsts={}, where=where)
    return (
        f"SELECT contact_id, jsonb_agg({value} ORDER BY rn) AS {name} FROM {source} WHERE {where} GROUP BY contact_id"
    )


def product_kinds(params: dict) -> str:
    return _in_list("pk", [str(k) for k in PRODUCT_KINDS], params)


def base_ctes(
    d: Dialect,
    model: ScoringModel,
    params: dict,
    *,
    subset: bool,
    vocabulary: Vocabulary = pivot.NONE,
    part: tuple[int, int] | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """CTEs ending in `measures`: one row per contact (in scope) with every raw measure but the
    topic and product lists, which `topic_lists`, `product_lists` and `strong_lists` hold (see
    `with_interest`). The names of `vocabulary` are summed in `act` (contacts/metrics/vocabulary.py).
    Scope: every contact, the contacts in %(ids)s (`subset`), or those whose id % parts = index
    (`part` = (index, parts), contacts/metrics/parallel.py). `extra` (name: an aggregate over the
    activities `a` up to as-of, with columns kind, occurred_at and value) adds columns to
    `measures`, summed in the same pass over the activities (0 for a contact without any)."""
    weight = _weight_case(model, params)
    age = d.age_days("a.occurred_at")
    decay = f"POWER(0.5, {age} / %(half_life)s)"
    rfv_kinds = _in_list("rfv", list(model.rfv_kinds), params)
    in_product_kinds = product_kinds(params)
    indexes = ""
    if vocabulary.topics is not None:
        indexes += f", {pivot.index_column(vocabulary.topics, 'a.topic', 'ts', params)} AS topic_ix"
    if vocabulary.products is not None:
        products = pivot.index_column(vocabulary.products, "a.product", "ps", params)
        indexes += f", CASE WHEN a.kind IN ({in_product_kinds}) THEN {products} END AS product_ix"
    per_term = "".join(f",\n            {column}" for column in pivot.act_columns(vocabulary))
    per_term += "".join(f",\n            {sql} AS {name}" for name, sql in (extra or {}).items())
    extra_measures = "".join(f",\n            COALESCE(act.{name}, 0) AS {name}" for name in extra or {})
    in_window = "AND a.occurred_at >= %(frequency_since)s" if model.rfv_frequency_window_days else ""
    act_scope, contact_scope = _scope(d, subset=subset, part=part)
    if vocabulary.topics is not None:
        topics = f"topic_lists AS ({pivot.topic_lists(vocabulary.topics, params)})"
    else:
        topics = _general_topic_lists(d, decay=decay, act_scope=act_scope)
    if vocabulary.products is not None:
        products = f"""product_lists AS ({pivot.product_lists(vocabulary.products, params)}),
    strong_lists AS (
        SELECT contact_id, strong_items AS items FROM product_lists WHERE strong_items <> {d.empty_list}
    )"""
    else:
        products = _general_product_lists(
            d, weight=weight, decay=decay, act_scope=act_scope, product_kinds=in_product_kinds
        )
    return f"""
    act AS (
        SELECT a.contact_id,
            COUNT(*) AS activity_count,
            MAX(a.occurred_at) AS last_activity_at,
            SUM(a.weight * a.decay) AS score,
            SUM(CASE WHEN a.occurred_at <= %(past_at)s
                     THEN a.weight * POWER(0.5, (a.age_days - {PAST_DAYS}) / %(half_life)s) ELSE 0 END) AS past_score,
            SUM(CASE WHEN a.occurred_at < %(email_since)s THEN 0
                     WHEN a.kind = 'email_open' THEN 1 WHEN a.kind = 'email_click' THEN 2 ELSE 0 END) AS email_points,
            SUM(CASE WHEN a.occurred_at >= %(web_since)s AND a.kind IN ('site_visit', 'page_view')
                     THEN 1 ELSE 0 END) AS web_count,
            SUM(CASE WHEN a.occurred_at >= %(recent_since)s THEN 1 ELSE 0 END) AS recent_count,
            MAX(CASE WHEN a.occurred_at >= %(lapse_since)s AND a.occurred_at <= %(past_at)s
                     THEN 1 ELSE 0 END) AS active_60_to_90,
            SUM(CASE WHEN a.occurred_at >= %(previous_since)s AND a.occurred_at < %(recent_since)s
                     THEN 1 ELSE 0 END) AS previous_count,
            MAX(a.occurred_at) FILTER (WHERE a.kind IN ({rfv_kinds})) AS counted_last,
            SUM(CASE WHEN a.kind IN ({rfv_kinds}) {in_window} THEN 1 ELSE 0 END) AS frequency,
            SUM(a.value) FILTER (WHERE a.kind = 'purchase') AS monetary,
            SUM(CASE WHEN a.kind = 'support_ticket_opened' THEN 1
                     WHEN a.kind = 'support_ticket_closed' THEN -1 ELSE 0 END) AS ticket_balance{per_term}
        FROM (
            -- Each activity's weight, age and decay once, for every sum (a fence: not merged into
            -- the aggregate, which would evaluate them for each use).
            SELECT a.contact_id, a.kind, a.occurred_at, a.value, {weight} AS weight, {age} AS age_days,
                {decay} AS decay{indexes}
            FROM contacts_activity a
            WHERE a.occurred_at <= %(as_of)s {act_scope}
            {d.fence}
        ) a
        GROUP BY a.contact_id
    ),
    {topics},
    {products},
    measures AS (
        SELECT c.id AS contact_id,
            CAST(%(as_of)s AS {"TIMESTAMP WITH TIME ZONE" if d.postgres else "TEXT"}) AS as_of,
            COALESCE(act.activity_count, 0) AS activity_count,
            act.last_activity_at,
            {d.round("COALESCE(act.score, 0)", 6)} AS engagement_score,
            {d.round("COALESCE(act.past_score, 0)", 6)} AS past_engagement_score,
            CASE WHEN COALESCE(act.email_points, 0) >= %(email_highly)s THEN 'highly_engaged'
                 WHEN COALESCE(act.email_points, 0) >= %(email_moderately)s THEN 'moderately_engaged'
                 ELSE 'disengaged' END AS email_engagement_level,
            CASE WHEN COALESCE(act.web_count, 0) >= %(web_active)s THEN 'active'
                 WHEN COALESCE(act.web_count, 0) >= %(web_engaged)s THEN 'engaged'
                 ELSE 'dormant' END AS web_activity_level,
            CASE WHEN act.counted_last IS NULL THEN NULL
                 ELSE {d.whole_days("%(as_of)s", "act.counted_last")} END AS recency_days,
            COALESCE(act.frequency, 0) AS frequency,
            COALESCE(act.monetary, 0) AS monetary,
            COALESCE(act.recent_count, 0) AS recent_activity_count,
            CASE WHEN act.active_60_to_90 = 1 THEN TRUE ELSE FALSE END AS active_60_to_90_days_ago,
            COALESCE(act.previous_count, 0) AS previous_activity_count,
            CASE WHEN COALESCE(act.previous_count, 0) > 0
                 THEN CAST(act.recent_count AS DOUBLE PRECISION) / act.previous_count END AS velocity_ratio,
            CASE WHEN COALESCE(act.recent_count, 0) >= %(velocity_min_recent)s
                  AND COALESCE(act.recent_count, 0) >= %(velocity_min_ratio)s * COALESCE(act.previous_count, 0)
                 THEN TRUE ELSE FALSE END AS is_accelerating,
            CASE WHEN c.customer_since IS NULL OR c.customer_since > {d.as_date("%(as_of_date)s")} THEN NULL
                 ELSE {d.date_days(d.as_date("%(as_of_date)s"), "c.customer_since")} END AS tenure_days,
            CASE WHEN c.lifecycle_changed_at > %(as_of)s THEN 0
                 ELSE {d.whole_days("%(as_of)s", "c.lifecycle_changed_at")} END AS days_in_stage,
            CASE WHEN c.renewal_date IS NULL THEN NULL
                 ELSE {d.date_days("c.renewal_date", d.as_date("%(as_of_date)s"))} END AS days_to_renewal,
            CASE WHEN COALESCE(act.ticket_balance, 0) > 0 THEN act.ticket_balance ELSE 0 END AS open_tickets,
            c.lifecycle_stage,
            c.product_adoption{extra_measures}
        FROM contacts_contact c
        LEFT JOIN act ON act.contact_id = c.id
        WHERE {contact_scope}
    )"""


def _scope(d: Dialect, *, subset: bool, part: tuple[int, int] | None) -> tuple[str, str]:
    """The condition added to the activities' WHERE and the contacts' WHERE for the run's scope."""
    if part is not None:
        index, parts = part
        return f"AND MOD(a.contact_id, {parts}) = {index}", f"MOD(c.id, {parts}) = {index}"
    if subset:
        return f"AND {d.id_in('a.contact_id')}", d.id_in("c.id")
    return "", "TRUE"


def _general_topic_lists(d: Dialect, *, decay: str, act_scope: str) -> str:
    """CTEs ending in `topic_lists`, grouping the activities by contact and topic."""
    return f"""
    topic_sums AS (
        SELECT a.contact_id, LOWER(a.topic) AS topic, SUM({decay}) AS weight
        FROM contacts_activity a
        WHERE a.occurred_at <= %(as_of)s AND a.topic <> '' {act_scope}
        GROUP BY a.contact_id, LOWER(a.topic)
    ),
    topic_ranked AS (
        SELECT contact_id, topic,
            {d.round("100.0 * weight / SUM(weight) OVER (PARTITION BY contact_id)", 1)} AS share,
            ROW_NUMBER() OVER (PARTITION BY contact_id ORDER BY weight DESC, topic) AS rn
        FROM topic_sums
    ),
    topic_lists AS {d.joined} ({
        _top_per_contact(
            d,
            "topic_ranked",
            columns=["topic", "share"],
            lists={"top_topics": f"{d.json_object}('topic', {{topic}}, 'share', {{share}})", "topics": "{topic}"},
            objects={"topic_shares": ("{topic}", "{share}")},
            firsts={"top_topic": "{topic}", "top_topic_share": "{share}"},
        )
    })"""


def _general_product_lists(d: Dialect, *, weight: str, decay: str, act_scope: str, product_kinds: str) -> str:
    """CTEs ending in `product_lists` and `strong_lists`, grouping the activities by contact and product."""
    strong = d.json_bool("{strong} = 1")  # a template over an item's columns, as the list expressions are
    return f"""
    product_sums AS (
        SELECT a.contact_id, LOWER(a.product) AS product, SUM({weight} * {decay}) AS intent,
            MAX(CASE WHEN a.kind = 'pricing_view' AND a.occurred_at >= %(strong_since)s THEN 1 ELSE 0 END) AS strong
        FROM contacts_activity a
        WHERE a.occurred_at <= %(as_of)s AND a.product <> '' AND a.kind IN ({product_kinds}) {act_scope}
        GROUP BY a.contact_id, LOWER(a.product)
    ),
    product_ranked AS (
        SELECT contact_id, product, {d.round("intent", 2)} AS intent, strong,
            ROW_NUMBER() OVER (PARTITION BY contact_id ORDER BY intent DESC, product) AS rn
        FROM product_sums
    ),
    product_lists AS {d.joined} ({
        _top_per_contact(
            d,
            "product_ranked",
            columns=["product", "intent", "strong"],
            lists={
                "product_interest": (
                    f"{d.json_object}('product', {{product}}, 'intent', {{intent}}, 'strong', {strong})"
                ),
                "products": "{product}",
            },
            objects={},
            firsts={"top_product": "{product}", "top_product_intent": "{intent}"},
        )
    }),
    strong_lists AS {d.joined} ({
        _all_per_contact(d, "product_ranked", name="items", value="product", where="strong = 1")
    })"""


def scored_ctes(d: Dialect, source: str) -> str:
    """CTEs `scored` and `measured` over `source`, a relation with the raw measures and these counts:
    n_all, score_le, score_lt, past_le, past_lt, n_rfv, r_le, f_le, v_le (`_le`: how many
    are <= this one, `_lt`: how many are < it, so n_all - score_le are greater)."""

    def level(score: str, greater: str, smaller: str) -> str:
        return f"""CASE WHEN {score} <= 0 THEN 'disengaged'
                 WHEN 100 * {greater} < %(top_percent)s * n_all THEN 'highly_engaged'
                 WHEN 100 * {smaller} < %(bottom_percent)s * n_all THEN 'disengaged'
                 ELSE 'moderately_engaged' END"""

    def score(count: str) -> str:
        return f"CASE WHEN recency_days IS NULL THEN NULL ELSE (5 * {count} + n_rfv - 1) / n_rfv END"

    tenure = f"100.0 * {d.least('COALESCE(tenure_days, 0)', '365')} / 365"
    readiness = (
        f"0.4 * COALESCE(product_adoption, 0) + 0.4 * engagement_percentile + 0.2 * {tenure} - 10 * open_tickets"
    )
    return f"""
    scored AS (
        SELECT src.*,
            100.0 * score_le / n_all AS engagement_percentile,
            {level("engagement_score", "(n_all - score_le)", "score_lt")} AS engagement_level,
            CASE WHEN recent_activity_count = 0 AND active_60_to_90_days_ago
                  AND {level("past_engagement_score", "(n_all - past_le)", "past_lt")} <> 'disengaged'
                 THEN TRUE ELSE FALSE END AS recently_disengaged,
            {score("r_le")} AS r_score,
            {score("f_le")} AS f_score,
            {score("v_le")} AS v_score
        FROM {source} src
    ),
    measured AS (
        SELECT scored.*,
            CASE WHEN r_score IS NULL THEN ''
                 WHEN r_score >= 4 AND f_score >= 4 AND v_score >= 4 THEN 'champions'
                 WHEN r_score >= 3 AND f_score >= 4 THEN 'loyal'
                 WHEN r_score >= 4 AND f_score <= 2 THEN 'new'
                 WHEN r_score >= 4 THEN 'promising'
                 WHEN r_score = 3 THEN 'needs_attention'
                 WHEN f_score >= 3 THEN 'at_risk'
                 ELSE 'hibernating' END AS rfv_cell,
            CASE WHEN lifecycle_stage IN ('customer', 'evangelist')
                 THEN {d.round(d.greatest("0", d.least("100", readiness)), 1)} END AS expansion_readiness
        FROM scored
    )"""


# One sort per rank key: "greater" counts are n_all minus the `_le` counts of the same sort.
COUNTS = """
            COUNT(*) OVER () AS n_all,
            COUNT(*) OVER (ORDER BY engagement_score) AS score_le,
            RANK() OVER (ORDER BY engagement_score) - 1 AS score_lt,
            COUNT(*) OVER (ORDER BY past_engagement_score) AS past_le,
            RANK() OVER (ORDER BY past_engagement_score) - 1 AS past_lt,
            COUNT(*) OVER (PARTITION BY recency_days IS NULL) AS n_rfv,
            COUNT(*) OVER (PARTITION BY recency_days IS NULL ORDER BY recency_days DESC) AS r_le,
            COUNT(*) OVER (PARTITION BY recency_days IS NULL ORDER BY frequency) AS f_le,
            COUNT(*) OVER (PARTITION BY recency_days IS NULL ORDER BY monetary) AS v_le"""
COUNT_COLUMNS = "n_all, score_le, score_lt, past_le, past_lt, n_rfv, r_le, f_le, v_le"


def with_interest(d: Dialect, source: str) -> str:
    """SELECT every column of `source` (one row per contact) and the contact's topic and product lists."""
    return f"""SELECT src.*,
            COALESCE(tl.topics, {d.empty_list}) AS topics,
            COALESCE(tl.top_topics, {d.empty_list}) AS top_topics,
            COALESCE(tl.topic_shares, {d.empty_object}) AS topic_shares,
            COALESCE(tl.top_topic, '') AS top_topic,
            tl.top_topic_share,
            COALESCE(pl.products, {d.empty_list}) AS products,
            COALESCE(pl.product_interest, {d.empty_list}) AS product_interest,
            COALESCE(pl.top_product, '') AS top_product,
            pl.top_product_intent,
            CASE WHEN sl.items IS NULL THEN FALSE ELSE TRUE END AS strong_intent,
            COALESCE(sl.items, {d.empty_list}) AS strong_intent_products
        FROM {source} src
        LEFT JOIN topic_lists tl ON tl.contact_id = src.contact_id
        LEFT JOIN product_lists pl ON pl.contact_id = src.contact_id
        LEFT JOIN strong_lists sl ON sl.contact_id = src.contact_id"""


def stored_counts(d: Dialect) -> str:
    """CTE `ranked` for an incremental run: the touched contacts' stored rows with window counts
    over every stored row; the other contacts' rows are read, not rewritten."""
    return f"""
    counts AS (
        SELECT contact_id, {COUNTS} FROM {TABLE}
    ),
    ranked AS (
        SELECT m.contact_id, m.engagement_score, m.past_engagement_score, m.recent_activity_count,
            m.active_60_to_90_days_ago,
            m.recency_days, m.frequency, m.monetary, m.tenure_days, m.open_tickets,
            c.lifecycle_stage, c.product_adoption, {COUNT_COLUMNS}
        FROM counts
        JOIN {TABLE} m ON m.contact_id = counts.contact_id
        JOIN contacts_contact c ON c.id = m.contact_id
        WHERE {d.id_in("counts.contact_id")}
    )"""


def _upsert(columns: list[str]) -> str:
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns if column != "contact_id")
    return f"ON CONFLICT (contact_id) DO UPDATE SET {updates}"


def full_select(d: Dialect, model: ScoringModel, params: dict, vocabulary: Vocabulary = pivot.NONE) -> str:
    """One SELECT of every contact's metrics (BASE_COLUMNS + RANKED_COLUMNS, in that order). The
    ranking sorts the narrow `measures`; the topic and product lists join the ranked rows last."""
    return f"""
    WITH {base_ctes(d, model, params, subset=False, vocabulary=vocabulary)},
    ranked AS (
        SELECT measures.*, {COUNTS} FROM measures
    ),
    {scored_ctes(d, "ranked")},
    complete AS ({with_interest(d, "measured")})
    SELECT {", ".join(BASE_COLUMNS + RANKED_COLUMNS)} FROM complete"""


def part_select(d: Dialect, model: ScoringModel, params: dict, vocabulary: Vocabulary, part: tuple[int, int]) -> str:
    """One SELECT of the raw measures and lists (`with_interest`) of one part of the contacts."""
    ctes = base_ctes(d, model, params, subset=False, vocabulary=vocabulary, part=part)
    return f"WITH {ctes} {with_interest(d, 'measures')}"


def ranked_select(d: Dialect, source: str) -> str:
    """One SELECT of every contact's metrics (as `full_select`) from `source`, the rows of
    `part_select` for every part: the ranking sorts only the rank keys and joins the counts back."""
    return f"""
    WITH counts AS (
        SELECT contact_id, {COUNTS}
        FROM (SELECT contact_id, engagement_score, past_engagement_score, recency_days, frequency, monetary
              FROM {source} AS src) keys
    ),
    ranked AS (
        SELECT src.*, {COUNT_COLUMNS} FROM {source} AS src JOIN counts ON counts.contact_id = src.contact_id
    ),
    {scored_ctes(d, "ranked")}
    SELECT {", ".join(BASE_COLUMNS + RANKED_COLUMNS)} FROM measured"""


# Rank keys counted by `bucket_counts`: name -> (column, sign, whether only RFV rows count).
# Each gives #{stored sign * column < touched sign * column}.
BUCKET_KEYS = {
    "s_lt": ("engagement_score", "", False),
    "s_gt": ("engagement_score", "-", False),
    "p_lt": ("past_engagement_score", "", False),
    "p_gt": ("past_engagement_score", "-", False),
    "r_lt": ("recency_days", "", True),
    "f_gt": ("frequency", "-", True),
    "v_gt": ("monetary", "-", True),
}


def bucket_counts(d: Dialect) -> str:
    """CTE `ranked` for an incremental run on PostgreSQL: the touched contacts' stored rows with
    the same counts as `COUNTS` gives them over every stored row, from one unsorted scan of the
    stored rows (method in the module docstring).

    Bounded by design: each threshold array enters the scan once, as a parameter (a scalar
    subquery, evaluated once), never as a column; a touched value's bucket is its DENSE_RANK among
    the touched values, not a search of the array. Carrying the arrays on every touched row made
    each join hash (touched rows x thresholds) bytes: 6,000 touched contacts wrote over 4 GB of
    temporary files at 20,000 contacts (issue 24)."""

    def key(alias: str, column: str, sign: str, rfv: bool) -> str:
        value = f"{sign}{alias}.{column}"
        return f"CASE WHEN {alias}.recency_days IS NOT NULL THEN {value} END" if rfv else value

    thresholds = ", ".join(
        f"COALESCE(ARRAY_AGG(DISTINCT {key('m', *spec)} ORDER BY {key('m', *spec)})"
        f" FILTER (WHERE {key('m', *spec)} IS NOT NULL), '{{}}') AS {name}"
        for name, spec in BUCKET_KEYS.items()
    )
    buckets = ", ".join(
        f"COALESCE(WIDTH_BUCKET({key('m', *spec)}, (SELECT {name} FROM thresholds)), -1) AS {name}"
        for name, spec in BUCKET_KEYS.items()
    )
    positions = ", ".join(
        f"CASE WHEN {key('t', *spec)} IS NOT NULL THEN DENSE_RANK() OVER (ORDER BY {key('t', *spec)}) END AS {name}"
        for name, spec in BUCKET_KEYS.items()
    )
    sets = ", ".join(f"({name})" for name in BUCKET_KEYS)
    which = " ".join(f"WHEN {name} IS NOT NULL THEN '{name}'" for name in BUCKET_KEYS)
    joins = "\n        ".join(
        f"{'LEFT JOIN' if spec[2] else 'JOIN'} below {name} ON {name}.rank_key = '{name}'"
        f" AND {name}.bucket = pos.{name}"
        for name, spec in BUCKET_KEYS.items()
    )
    return f"""
    touched AS (
        SELECT m.contact_id, m.engagement_score, m.past_engagement_score, m.recent_activity_count,
            m.active_60_to_90_days_ago,
            m.recency_days, m.frequency, m.monetary, m.tenure_days, m.open_tickets,
            c.lifecycle_stage, c.product_adoption
        FROM {TABLE} m JOIN contacts_contact c ON c.id = m.contact_id
        WHERE {d.id_in("m.contact_id")}
    ),
    thresholds AS (
        SELECT {thresholds} FROM touched m
    ),
    positions AS (
        SELECT t.contact_id, {positions} FROM touched t
    ),
    buckets AS (
        SELECT {", ".join(BUCKET_KEYS)}, COUNT(*) AS n
        FROM (SELECT {buckets} FROM {TABLE} m) keyed
        GROUP BY GROUPING SETS ({sets})
    ),
    below AS (
        SELECT rank_key, bucket,
            CAST(SUM(n) OVER (PARTITION BY rank_key ORDER BY bucket) - n AS BIGINT) AS below,
            CAST(SUM(n) OVER (PARTITION BY rank_key) AS BIGINT) AS total
        FROM (SELECT CASE {which} END AS rank_key, COALESCE({", ".join(BUCKET_KEYS)}) AS bucket, n
              FROM buckets) per_key
        WHERE bucket >= 0
    ),
    ranked AS (
        SELECT t.*,
            s_gt.total AS n_all,
            s_gt.total - s_gt.below AS score_le,
            s_lt.below AS score_lt,
            p_gt.total - p_gt.below AS past_le,
            p_lt.below AS past_lt,
            r_lt.total AS n_rfv,
            r_lt.total - r_lt.below AS r_le,
            f_gt.total - f_gt.below AS f_le,
            v_gt.total - v_gt.below AS v_le
        FROM touched t JOIN positions pos ON pos.contact_id = t.contact_id
        {joins}
    )"""


def subset_statements(d: Dialect, model: ScoringModel, params: dict) -> list[str]:
    """Two statements for the contacts in %(ids)s: upsert their raw measures, then rank them."""
    placeholders = [PLACEHOLDERS[column] for column in RANKED_COLUMNS]
    upsert = f"""
    WITH {base_ctes(d, model, params, subset=True)},
    base AS ({with_interest(d, "measures")})
    INSERT INTO {TABLE} ({", ".join(BASE_COLUMNS + RANKED_COLUMNS)})
    SELECT {", ".join(BASE_COLUMNS + placeholders)} FROM base WHERE TRUE
    {_upsert(BASE_COLUMNS)}"""
    assignments = ", ".join(f"{column} = measured.{column}" for column in RANKED_COLUMNS)
    rank = f"""
    WITH {bucket_counts(d) if d.postgres else stored_counts(d)},
    {scored_ctes(d, "ranked")}
    UPDATE {TABLE} SET {assignments}
    FROM measured WHERE {TABLE}.contact_id = measured.contact_id AND {d.id_in(f"{TABLE}.contact_id")}"""
    return [upsert, rank]
