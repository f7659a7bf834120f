"""The field registry: every path a rule may name, its type, criterion layer and operators.

Public: `Field`, `get_fields(*, properties=True) -> dict[str, Field]`, `names_field(rule, prefix)`, `reads_rows(rule)`,
`operators_for(type) -> tuple[str, ...]`, `METRIC_FIELDS`, `metric_field(name, type, layer) -> Field`, `TYPES`.

The registry is the only door to SQL: the compiler and the explainer read a value only through a
`Field`'s `lookup` (an ORM path from Contact) or its `property_key` (a key of Contact.properties).
`props.<key>` fields come from PropertyDefinition rows read at call time, so declaring a
definition makes it usable in rules without code; so do the `metrics.propensity_<name>` fields
(probability, `_percentile`, `_tier`) of every propensity model (predictions.models), read through
a Field's `score` (model id, PropensityScore column). `metrics.*` fields come from `METRIC_FIELDS`:
appending `metric_field("x", "number", Layer.BEHAVIORAL)` is all it takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from contacts.models import Company, Contact, Layer, PropertyDefinition
from predictions.models import PropensityModel, Tier

TYPES = ("text", "number", "bool", "date", "datetime", "choice", "tags")

_ANY_TYPE = ("is_set", "is_not_set")
_OPERATORS: dict[str, tuple[str, ...]] = {
    "text": ("eq", "neq", "in", "not_in", "contains", "starts_with", "ends_with"),
    "number": ("eq", "neq", "gt", "gte", "lt", "lte", "between", "top_percent", "bottom_percent"),
    "bool": ("is_true", "is_false"),
    "choice": ("eq", "neq", "in", "not_in"),
    "date": ("before", "after", "between", "in_last_days", "in_next_days", "more_than_days_ago"),
    "datetime": ("before", "after", "between", "in_last_days", "in_next_days", "more_than_days_ago"),
    "tags": ("contains_any", "contains_all", "contains_none"),
}


@dataclass(frozen=True)
class Field:
    path: str
    label: str
    type: str
    layer: str
    lookup: str
    choices: tuple[str, ...] = ()
    property_key: str | None = None
    score: tuple[int, str] | None = None  # (propensity model id, PropensityScore column)
    choice_labels: tuple[str, ...] = ()  # beside `choices`, in the same order (empty: the values are the labels)

    @property
    def operators(self) -> tuple[str, ...]:
        return operators_for(self.type)

    def choice_label(self, value: str) -> str:
        """The label people read for a choice value ("Marketing qualified lead" for `mql`)."""
        if value in self.choices and self.choice_labels:
            return self.choice_labels[self.choices.index(value)]
        return value


def operators_for(type: str) -> tuple[str, ...]:
    """The operators a field of this type accepts, `is_set`/`is_not_set` last."""
    return _OPERATORS[type] + _ANY_TYPE


# `metrics.*`: the stored measures of ContactMetrics (formulas in contacts/metrics/sql.py), a
# OneToOne to Contact with related_name "metrics"; a contact without a metrics row has every metric
# missing. The JSON detail columns (top_topics, topic_shares, product_interest) are not fields:
# `topics`/`products` (tags) and `top_topic_share` (number) carry what rules need from them.
METRIC_FIELDS: list[Field] = []

_METRIC_FIELDS = [
    ("engagement_score", "number", Layer.BEHAVIORAL),
    ("engagement_percentile", "number", Layer.BEHAVIORAL),
    ("engagement_level", "choice", Layer.BEHAVIORAL),
    ("past_engagement_score", "number", Layer.BEHAVIORAL),
    ("active_60_to_90_days_ago", "bool", Layer.BEHAVIORAL),
    ("email_engagement_level", "choice", Layer.BEHAVIORAL),
    ("web_activity_level", "choice", Layer.BEHAVIORAL),
    ("activity_count", "number", Layer.BEHAVIORAL),
    ("last_activity_at", "datetime", Layer.BEHAVIORAL),
    ("topics", "tags", Layer.BEHAVIORAL),
    ("top_topic", "text", Layer.BEHAVIORAL),
    ("top_topic_share", "number", Layer.BEHAVIORAL),
    ("products", "tags", Layer.BEHAVIORAL),
    ("top_product", "text", Layer.BEHAVIORAL),
    ("top_product_intent", "number", Layer.BEHAVIORAL),
    ("strong_intent", "bool", Layer.BEHAVIORAL),
    ("strong_intent_products", "tags", Layer.BEHAVIORAL),
    ("recent_activity_count", "number", Layer.BEHAVIORAL),
    ("previous_activity_count", "number", Layer.BEHAVIORAL),
    ("velocity_ratio", "number", Layer.BEHAVIORAL),
    ("is_accelerating", "bool", Layer.BEHAVIORAL),
    ("recently_disengaged", "bool", Layer.BEHAVIORAL),
    ("recency_days", "number", Layer.VALUE),
    ("frequency", "number", Layer.VALUE),
    ("monetary", "number", Layer.VALUE),
    ("r_score", "number", Layer.VALUE),
    ("f_score", "number", Layer.VALUE),
    ("v_score", "number", Layer.VALUE),
    ("rfv_cell", "choice", Layer.VALUE),
    ("expansion_readiness", "number", Layer.VALUE),
    ("tenure_days", "number", Layer.LIFECYCLE),
    ("days_in_stage", "number", Layer.LIFECYCLE),
    ("days_to_renewal", "number", Layer.LIFECYCLE),
    ("open_tickets", "number", Layer.LIFECYCLE),
    ("as_of", "datetime", Layer.BEHAVIORAL),
]

_CONTACT_FIELDS = [
    # (model field, type, layer)
    ("email", "text", Layer.DEMOGRAPHIC),
    ("first_name", "text", Layer.DEMOGRAPHIC),
    ("last_name", "text", Layer.DEMOGRAPHIC),
    ("phone", "text", Layer.DEMOGRAPHIC),
    ("job_title", "text", Layer.FIRMOGRAPHIC),
    ("job_function", "choice", Layer.FIRMOGRAPHIC),
    ("seniority", "choice", Layer.FIRMOGRAPHIC),
    ("country", "text", Layer.GEOGRAPHIC),
    ("region", "text", Layer.GEOGRAPHIC),
    ("city", "text", Layer.GEOGRAPHIC),
    ("postal_code", "text", Layer.GEOGRAPHIC),
    ("time_zone", "text", Layer.GEOGRAPHIC),
    ("language", "text", Layer.DEMOGRAPHIC),
    ("birth_year", "number", Layer.DEMOGRAPHIC),
    ("gender", "choice", Layer.DEMOGRAPHIC),
    ("income_band", "choice", Layer.DEMOGRAPHIC),
    ("education", "choice", Layer.DEMOGRAPHIC),
    ("marital_status", "choice", Layer.DEMOGRAPHIC),
    ("interests", "tags", Layer.PSYCHOGRAPHIC),
    ("values", "tags", Layer.PSYCHOGRAPHIC),
    ("technologies", "tags", Layer.TECHNOGRAPHIC),
    ("lifecycle_stage", "choice", Layer.LIFECYCLE),
    ("lifecycle_changed_at", "datetime", Layer.LIFECYCLE),
    ("lead_score", "number", Layer.LIFECYCLE),
    ("estimated_deal_size", "number", Layer.VALUE),
    ("lifetime_value", "number", Layer.VALUE),
    ("customer_since", "date", Layer.LIFECYCLE),
    ("renewal_date", "date", Layer.LIFECYCLE),
    ("product_adoption", "number", Layer.BEHAVIORAL),
    ("email_status", "choice", Layer.BEHAVIORAL),
    ("do_not_contact", "bool", Layer.BEHAVIORAL),
    ("reachability", "choice", Layer.BEHAVIORAL),
    ("created_at", "datetime", Layer.LIFECYCLE),
]

_COMPANY_FIELDS = [
    ("name", "text", Layer.FIRMOGRAPHIC),
    ("domain", "text", Layer.FIRMOGRAPHIC),
    ("industry", "text", Layer.FIRMOGRAPHIC),
    ("employee_count", "number", Layer.FIRMOGRAPHIC),
    ("annual_revenue", "number", Layer.FIRMOGRAPHIC),
    ("country", "text", Layer.GEOGRAPHIC),
    ("region", "text", Layer.GEOGRAPHIC),
    ("city", "text", Layer.GEOGRAPHIC),
    ("technologies", "tags", Layer.TECHNOGRAPHIC),
    ("is_target_account", "bool", Layer.FIRMOGRAPHIC),
    ("is_competitor", "bool", Layer.FIRMOGRAPHIC),
]

_OWNER_FIELDS = [
    Field("owner.username", "Owner username", "text", Layer.LIFECYCLE, "owner__username"),
    Field("owner.email", "Owner email", "text", Layer.LIFECYCLE, "owner__email"),
]


def _model_field(model, name: str, type: str, layer: str, *, prefix: str = "") -> Field:
    model_field = model._meta.get_field(name)
    label = str(model_field.verbose_name)
    choices = tuple(value for value, _ in model_field.choices or ())
    labels = tuple(str(label) for _, label in model_field.choices or ())
    path = f"{prefix}.{name}" if prefix else name
    lookup = f"{prefix}__{name}" if prefix else name
    if prefix in ("company", "owner"):  # metrics read as the contact's own: "Engagement score"
        label = f"{prefix.capitalize()} {label}"
    return Field(path, label[:1].upper() + label[1:], type, str(layer), lookup, choices, choice_labels=labels)


def metric_field(name: str, type: str, layer: str) -> Field:
    """`metrics.<name>`: a ContactMetrics column, label and choices read from the model."""
    metrics_model = Contact._meta.get_field("metrics").related_model
    return _model_field(metrics_model, name, type, layer, prefix="metrics")


def _property_field(definition: PropertyDefinition) -> Field:
    choices = tuple(definition.choices) if definition.type == "choice" else ()
    return Field(
        path=f"props.{definition.key}",
        label=definition.label,
        type=definition.type,
        layer=definition.layer,
        lookup="properties",
        choices=choices,
        property_key=definition.key,
    )


METRIC_FIELDS += [metric_field(*spec) for spec in _METRIC_FIELDS]
PROPENSITY_PREFIX = "metrics.propensity_"


def _propensity_fields() -> list[Field]:
    """Each propensity model's probability, percentile and tier (a contact it has not scored has none)."""
    fields = []
    layer = Layer.BEHAVIORAL
    for model_id, name in PropensityModel.objects.order_by("name").values_list("id", "name"):
        path = f"{PROPENSITY_PREFIX}{name}"
        fields += [
            Field(path, f"Propensity to {name}: probability", "number", layer, "", score=(model_id, "probability")),
            Field(
                f"{path}_percentile",
                f"Propensity to {name}: percentile",
                "number",
                Layer.BEHAVIORAL,
                "",
                score=(model_id, "percentile"),
            ),
            Field(
                f"{path}_tier",
                f"Propensity to {name}: tier",
                "choice",
                Layer.BEHAVIORAL,
                "",
                choices=tuple(Tier.values),
                score=(model_id, "tier"),
                choice_labels=tuple(str(label) for label in Tier.labels),
            ),
        ]
    return fields


def propensity_models_named(rule: object) -> list[str]:
    """Names of the propensity models whose score fields the rule reads, in order of appearance."""
    names: list[str] = []
    if isinstance(rule, dict):
        field = rule.get("field")
        if isinstance(field, str) and field.startswith(PROPENSITY_PREFIX):
            name = field.removeprefix(PROPENSITY_PREFIX).removesuffix("_percentile").removesuffix("_tier")
            names.append(name)
        children = list(rule.values())
    elif isinstance(rule, list):
        children = rule
    else:
        return names
    for child in children:
        names += [name for name in propensity_models_named(child) if name not in names]
    return list(dict.fromkeys(names))


def reads_rows(rule: object) -> bool:
    """Whether the rule names a field the registry reads from the database (props.*, propensity scores)."""
    return names_field(rule, "props.") or names_field(rule, PROPENSITY_PREFIX)


def get_fields(*, properties: bool = True) -> dict[str, Field]:
    """Every field a rule may name, by path (two queries: PropertyDefinitions and propensity models).

    `properties=False` leaves the `props.*` and propensity fields out and runs no query, for a rule
    naming none (`reads_rows`).
    """
    fields = [*_model_fields(), *_OWNER_FIELDS]
    if properties:
        fields += [_property_field(d) for d in PropertyDefinition.objects.order_by("key")]
    fields += METRIC_FIELDS
    if properties:
        fields += _propensity_fields()
    return {field.path: field for field in fields}


def fields_stamp_sql() -> str:
    """PostgreSQL: a subquery whose value changes whenever a row `get_fields` reads does (every
    column of each PropertyDefinition, the id and name of each propensity model), for callers that
    keep the registry between calls (segments/refresh.py)."""
    definitions = PropertyDefinition._meta.db_table
    models = PropensityModel._meta.db_table
    return f"""SELECT md5(COALESCE((SELECT string_agg(d::text, ';' ORDER BY d.id) FROM {definitions} d), '')
        || '/' || COALESCE((SELECT string_agg(ROW(m.id, m.name)::text, ';' ORDER BY m.id) FROM {models} m), ''))"""


@cache
def _model_fields() -> tuple[Field, ...]:
    """The contact and company fields, read from the models once (a refresh asks for the registry
    every time, and building these cost ~0.1 ms)."""
    contact = [_model_field(Contact, *spec) for spec in _CONTACT_FIELDS]
    return (*contact, *(_model_field(Company, *spec, prefix="company") for spec in _COMPANY_FIELDS))


def names_field(rule: object, prefix: str) -> bool:
    """Whether a rule names a field starting with `prefix` ("props.", "metrics.") anywhere in its tree."""
    if isinstance(rule, dict):
        field = rule.get("field")
        if isinstance(field, str) and field.startswith(prefix):
            return True
        return any(names_field(child, prefix) for child in rule.values())
    if isinstance(rule, list):
        return any(names_field(child, prefix) for child in rule)
    return False
