"""What a model predicts: who is in its population at a cutoff, and who had the outcome in the
horizon after it.

- convert: not a customer (or evangelist) at the cutoff; became a customer or won a deal in
  (cutoff, cutoff + horizon].
- expand: a customer or evangelist at the cutoff; won a deal, or made a purchase above
  `expand_min_purchase`, in the horizon.
- churn: a customer or evangelist at the cutoff; left those stages in the horizon, or (with
  `churn_on_inactivity`) neither bought nor engaged (no activity other than support tickets).
- custom_rule: everyone; the outcome is a segment rule evaluated at the end of the horizon
  (event conditions are point-in-time; property conditions read the stored values).
- custom_field: imported data with known outcomes and no time axis: contacts whose `label_field`
  is set; the outcome is its value (true, a number above 0, or text other than false/no/0).

Rules belong to `segments`, which sits above this app: segments registers the two functions this
module needs (`set_rule_support` in SegmentsConfig.ready), as it registers its change listeners.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db.models import Q

from contacts.models import (
    Activity,
    ActivityKind,
    Contact,
    Deal,
    DealStage,
    LifecycleChange,
    LifecycleStage,
    PropertyDefinition,
)
from predictions.features import VOLATILE, VOLATILE_CATEGORIES, RawFeatures
from predictions.models import HORIZONS, Holdout, PropensityModel, Target

CUSTOMER_STAGES = (LifecycleStage.CUSTOMER, LifecycleStage.EVANGELIST)
NOT_ENGAGEMENT = (ActivityKind.SUPPORT_TICKET_OPENED, ActivityKind.SUPPORT_TICKET_CLOSED)
MIN_LABEL_SHARE = 0.5
_CONTACT_LABEL_FIELDS = ("do_not_contact", "lead_score", "lifetime_value", "lifecycle_stage", "email_status")

RuleValidator = Callable[[dict], list[str]]
RuleMatcher = Callable[[dict, datetime], Iterable[int]]
_rules: dict[str, Callable] = {}


def set_rule_support(*, validate: RuleValidator, matching_ids: RuleMatcher) -> None:
    """Called once by segments: how to check a label rule (errors with JSON paths) and run it."""
    _rules["validate"], _rules["match"] = validate, matching_ids


@dataclass(frozen=True)
class Window:
    cutoff: datetime
    end: datetime


def windows(model: PropensityModel, *, now: datetime) -> tuple[Window, Window]:
    """(training, validation): train at now - 2 horizons, validate on the horizon after it."""
    horizon = timedelta(days=model.horizon_days)
    return Window(now - 2 * horizon, now - horizon), Window(now - horizon, now)


def target_errors(model: PropensityModel) -> dict[str, str]:
    """What is wrong with the model's definition, by field; empty when it can be trained."""
    errors: dict[str, str] = {}
    if model.target not in Target.values:
        errors["target"] = f"Unknown target {model.target!r}; allowed: {', '.join(Target.values)}."
    if model.horizon_days not in HORIZONS:
        allowed = ", ".join(str(h) for h in HORIZONS)
        errors["horizon_days"] = f"Horizon {model.horizon_days} days is not allowed; choose one of {allowed}."
    rules = [
        ("label_rule", model.target == Target.CUSTOM_RULE, "A custom_rule model needs a label rule", "label rule"),
        ("holdout_rule", model.holdout == Holdout.RULE, "A rule holdout needs a rule selecting the validation contacts",
         "holdout rule"),
    ]  # fmt: skip
    for name, needed, missing, what in rules:
        problem = _rule_error(getattr(model, name), missing=missing, what=what) if needed else None
        if problem:
            errors[name] = problem
    if model.target == Target.CUSTOM_FIELD:
        problem = _label_field_error(model.label_field)
        if problem:
            errors["label_field"] = problem
    allowed_volatile = sorted([*VOLATILE, *VOLATILE_CATEGORIES])
    if not isinstance(model.volatile_fields, list):
        errors["volatile_fields"] = f"A list of field names is needed; allowed: {', '.join(allowed_volatile)}."
    else:
        unknown = [str(name) for name in model.volatile_fields if name not in allowed_volatile]
        if unknown:
            errors["volatile_fields"] = (
                f"Unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed_volatile)}."
            )
    return errors


def _rule_error(rule: object, *, missing: str, what: str) -> str | None:
    """Why a rule the model needs (its label or its holdout) cannot be used; None when it can."""
    if not isinstance(rule, dict) or not rule:
        return f"{missing} (a segment rule, as JSON)."
    problems = _rules["validate"](rule) if "validate" in _rules else []
    return f"Invalid {what}: " + "; ".join(problems) if problems else None


def _label_field_error(path: str) -> str | None:
    if path.startswith("props."):
        if not PropertyDefinition.objects.filter(key=path.removeprefix("props.")).exists():
            return f"No custom property {path!r} is declared."
        return None
    if path not in _CONTACT_LABEL_FIELDS:
        allowed = ", ".join(_CONTACT_LABEL_FIELDS)
        return f"Label field {path!r} is not props.<key> or one of: {allowed}."
    return None


def in_population(model: PropensityModel, raw: RawFeatures) -> np.ndarray:
    """Which of `raw`'s contacts the model predicts for at `raw.as_of` (a boolean mask)."""
    if model.target in (Target.CUSTOM_RULE, Target.CUSTOM_FIELD):
        return np.ones(len(raw), dtype=bool)
    codes, vocabulary = raw.categories["lifecycle_stage"]
    customer_codes = [i for i, stage in enumerate(vocabulary) if stage in CUSTOMER_STAGES]
    customer = np.isin(codes, customer_codes)
    return ~customer if model.target == Target.CONVERT else customer


def outcomes(model: PropensityModel, window: Window, contact_ids: np.ndarray) -> np.ndarray:
    """Whether each of `contact_ids` had the outcome in (window.cutoff, window.end]."""
    positive = _positive_ids(model, window, contact_ids)
    return np.isin(contact_ids, np.fromiter(positive, dtype=np.int64))


def _in_window(field: str, window: Window) -> Q:
    return Q(**{f"{field}__gt": window.cutoff, f"{field}__lte": window.end})


def _positive_ids(model: PropensityModel, window: Window, contact_ids: np.ndarray) -> set[int]:
    if model.target == Target.CONVERT:
        became = LifecycleChange.objects.filter(_in_window("changed_at", window), to_stage=LifecycleStage.CUSTOMER)
        won = Deal.objects.filter(_in_window("closed_at", window), stage=DealStage.WON, contact__isnull=False)
        return set(became.values_list("contact_id", flat=True)) | set(won.values_list("contact_id", flat=True))
    if model.target == Target.EXPAND:
        won = Deal.objects.filter(_in_window("closed_at", window), stage=DealStage.WON, contact__isnull=False)
        bought = Activity.objects.filter(
            _in_window("occurred_at", window), kind=ActivityKind.PURCHASE, value__gt=model.expand_min_purchase
        )
        return set(won.values_list("contact_id", flat=True)) | set(bought.values_list("contact_id", flat=True))
    if model.target == Target.CHURN:
        left = LifecycleChange.objects.filter(_in_window("changed_at", window), from_stage__in=CUSTOMER_STAGES).exclude(
            to_stage__in=CUSTOMER_STAGES
        )
        churned = set(left.values_list("contact_id", flat=True))
        if model.churn_on_inactivity:
            engaged = Activity.objects.filter(_in_window("occurred_at", window)).exclude(kind__in=NOT_ENGAGEMENT)
            active = set(engaged.values_list("contact_id", flat=True).distinct())
            churned |= {int(i) for i in contact_ids} - active
        return churned
    if model.target == Target.CUSTOM_RULE:
        return set(_rules["match"](model.label_rule, window.end))
    return set(label_values(model)[0])


def rule_members(rule: object, at: datetime) -> set[int]:
    """Ids of the contacts a (valid) segment rule selects at `at`: a holdout rule's validation contacts."""
    return {int(pk) for pk in _rules["match"](rule, at)}


def label_values(model: PropensityModel) -> tuple[list[int], list[int]]:
    """custom_field: (ids with a true outcome, ids with the field set at all)."""
    path = model.label_field
    key = path.removeprefix("props.") if path.startswith("props.") else None
    rows = Contact.objects.values_list("id", "properties" if key else path)
    positive, labelled = [], []
    for contact_id, value in rows.iterator(chunk_size=10_000):
        if key is not None:
            value = value.get(key) if isinstance(value, dict) else None
        truth = _truth(value)
        if truth is None:
            continue
        labelled.append(contact_id)
        if truth:
            positive.append(contact_id)
    return positive, labelled


def _truth(value: object) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    text = str(value).strip().lower()
    try:
        return float(text) > 0
    except ValueError:
        return text not in ("false", "no", "n", "0", "off")
