"""Merging two contacts that are one person, and undoing a merge exactly.

`merge_contacts(survivor_id=, loser_id=, choices=, by=)` keeps the survivor and deletes the loser in
one transaction:

- the survivor's fields take, field by field, its own value or the loser's (`choices`; by default
  its own where set, else the loser's; the further lifecycle stage; the higher lead score; tag
  lists joined). Consent is never chosen: do-not-contact is kept if either had it, the e-mail
  status is the more restrictive one (unsubscribed, then bounced), and the first-seen date is the
  earlier one;
- the loser's activities, deals and lifecycle history move to the survivor;
- every app that keeps rows about contacts acts through a participant it registered at start-up
  (`add_merge_participant`): segments moves the memberships (recorded with reason `merge`) and
  keeps the survivor in every suppression segment either was in; activation refuses a merge while
  an export of a segment holding either contact runs, and gives the survivor the loser's export
  snapshot rows where the destination has the loser only (activation/merging.py);
- whatever else would go with the loser (its metrics, segment history, automation runs, candidate
  pairs...) is kept, serialised, in the ContactMerge row, and then the loser is deleted;
- the address given up (the loser's, or the survivor's own when it took the loser's) becomes an
  alias of the survivor (ContactAlias): an import, API upsert, enrichment, activity or deal naming
  it is the survivor's instead of creating the merged-away contact again (contacts/ingest.py
  `aliased`). The loser's own aliases move to the survivor with its activities.

`undo_merge(merge_id, by=)` puts back exactly what was there: the loser with its id and every row
that went with it, the moved rows by id, the survivor's fields, and each participant's part; the
merge's alias goes.
The contacts both are announced (contacts.writes), so their segments refresh after commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import models, transaction
from django.utils import timezone

from contacts import provenance, writes
from contacts.models import (
    Activity,
    ActivityTally,
    Company,
    Contact,
    ContactAlias,
    ContactMerge,
    Deal,
    EmailStatus,
    LifecycleChange,
    LifecycleStage,
    PropertyDefinition,
)
from contacts.row_snapshots import cascaded_rows, restore_rows, serialize
from crmseg_site.model_fields import concrete_field

SURVIVOR, LOSER, BOTH = "survivor", "loser", "both"
Model = TypeVar("Model", Contact, Company)
# Never chosen: consent and bookkeeping (see the module's docstring).
FIXED_FIELDS = frozenset(
    {"id", "do_not_contact", "email_status", "created_at", "updated_at", "lifecycle_changed_at", "original_values",
     "enriched_at"}
)  # fmt: skip
TAG_FIELDS = frozenset({"interests", "values", "technologies"})
# Most restrictive first.
EMAIL_STATUS_ORDER: list[str] = [EmailStatus.UNSUBSCRIBED, EmailStatus.BOUNCED, EmailStatus.VALID]
STAGE_ORDER = [s for s in LifecycleStage.values if s != LifecycleStage.OTHER]
# Rows that move to the survivor, kept by id for undo (the loser's own aliases too: a chain of merges
# keeps every address the survivor answers to).
MOVED = (Activity, Deal, LifecycleChange, ContactAlias)
MOVE_CHUNK = 5000


class MergeRefused(ValueError):
    """A merge or an undo that cannot be done; the message says why and what to do."""


class BadChoice(MergeRefused):
    """The operator's `choices` name a field the merge cannot choose, or a side it cannot take: bad
    input (the API answers 400 naming `path`), not a clash with what is stored."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class MergeParticipant:
    """What an app does in a merge. `check(contact_ids)` says why the merge must not happen now
    (or None); `apply(merge, by)` acts inside the merge's transaction before the loser goes and
    returns what undo needs (JSON); `undo(merge, record, by)` reverses it after the loser is back."""

    name: str
    apply: Callable[[ContactMerge, User | None], dict]
    undo: Callable[[ContactMerge, dict, User | None], None]
    check: Callable[[list[int]], str | None] | None = None


_participants: list[MergeParticipant] = []


def add_merge_participant(participant: MergeParticipant) -> None:
    if all(p.name != participant.name for p in _participants):
        _participants.append(participant)


# -- survivorship -----------------------------------------------------------------------------


def choosable_fields() -> list[str]:
    """The contact fields a merge chooses between, in form order (custom properties as props.<key>)."""
    return [f.name for f in Contact._meta.concrete_fields if f.name not in FIXED_FIELDS | {"properties"}]


def _is_set(value: object) -> bool:
    return value not in (None, "", [], {})


def default_choices(survivor: Contact, loser: Contact) -> dict[str, str]:
    """Whose value each field keeps unless the operator says otherwise."""
    chosen = {}
    for name in choosable_fields():
        mine, theirs = _value(survivor, name), _value(loser, name)
        if name in TAG_FIELDS:
            chosen[name] = BOTH
        elif name == "lifecycle_stage":
            chosen[name] = LOSER if _stage_rank(theirs) > _stage_rank(mine) else SURVIVOR
        elif name == "lead_score":
            chosen[name] = LOSER if theirs > mine else SURVIVOR
        else:
            chosen[name] = LOSER if not _is_set(mine) and _is_set(theirs) else SURVIVOR
    for key in sorted(set(survivor.properties) | set(loser.properties)):
        mine, theirs = survivor.properties.get(key), loser.properties.get(key)
        chosen[f"props.{key}"] = LOSER if not _is_set(mine) and _is_set(theirs) else SURVIVOR
    return chosen


def resolve_choices(survivor: Contact, loser: Contact, choices: dict[str, str] | None) -> dict[str, str]:
    """`choices` over the defaults, checked: an unknown field or choice is refused by name."""
    return overlay_choices(
        default_choices(survivor, loser),
        choices,
        what="contact",
        fixed_fields=FIXED_FIELDS,
        tag_fields=TAG_FIELDS,
        fixed_reason="the more restrictive or earlier value",
    )


def overlay_choices(
    chosen: dict[str, str],
    choices: object,
    *,
    what: str,
    fixed_fields: frozenset[str],
    tag_fields: frozenset[str],
    fixed_reason: str,
) -> dict[str, str]:
    """The operator's `choices` over the defaults `chosen` (a contact's or a company's merge), checked:
    a field the merge cannot choose, or a side the field cannot take, is refused by name."""
    if choices is None:
        return chosen
    if not isinstance(choices, dict):
        raise BadChoice("choices", 'expected an object of field: "survivor" or "loser".')
    for name, side in choices.items():
        if name not in chosen:
            fixed = f" (it is not chosen: the merge keeps {fixed_reason})" * (name in fixed_fields)
            raise BadChoice(f"choices.{name}", f"not a field either {what} can give{fixed}.")
        allowed = (SURVIVOR, LOSER, BOTH) if name in tag_fields else (SURVIVOR, LOSER)
        if side not in allowed:
            raise BadChoice(f"choices.{name}", f"{side!r} is not one of {', '.join(allowed)}.")
        chosen[name] = side
    return chosen


def chosen_value(side: str, mine: Any, theirs: Any) -> Any:
    """The value a field keeps: the survivor's, the loser's, or both tag lists joined (the survivor's first)."""
    if side == BOTH:
        return mine + [tag for tag in theirs if tag not in mine]
    return theirs if side == LOSER else mine


def merged_values(survivor: Contact, loser: Contact, chosen: dict[str, str]) -> dict[str, Any]:
    """The survivor's new field values (Contact field name -> value)."""
    values: dict[str, Any] = {}
    for name in choosable_fields():
        values[name] = chosen_value(chosen[name], _value(survivor, name), _value(loser, name))
    values["properties"] = {
        key[len("props.") :]: (loser if side == LOSER else survivor).properties.get(key[len("props.") :])
        for key, side in chosen.items()
        if key.startswith("props.")
    }
    values["properties"] = {key: value for key, value in values["properties"].items() if value is not None}
    values["do_not_contact"] = survivor.do_not_contact or loser.do_not_contact
    values["email_status"] = min(
        (survivor.email_status, loser.email_status), key=lambda status: EMAIL_STATUS_ORDER.index(status)
    )
    values["created_at"] = min(survivor.created_at, loser.created_at)
    values["original_values"] = {**loser.original_values, **survivor.original_values}
    # Each kept value keeps its source: enriched where the contacts giving it had it enriched.
    values["enriched_at"] = provenance.merged_marks(
        {path: givers(survivor, loser, side, path, value=_value) for path, side in chosen.items()}
    )
    return values


def givers(survivor: Model, loser: Model, side: str, path: str, *, value: Callable[[Model, str], Any]) -> list[Model]:
    """The records a merged value comes from: the chosen side's, or both sides that have tags to join."""
    if side == BOTH:
        return [record for record in (survivor, loser) if _is_set(value(record, path))]
    return [loser if side == LOSER else survivor]


def _value(contact: Contact, name: str) -> Any:
    return getattr(contact, concrete_field(Contact, name).attname)


def _stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else -1


# -- merge and undo ---------------------------------------------------------------------------


def merge_contacts(
    *, survivor_id: int, loser_id: int, choices: dict[str, str] | None = None, by: User | None = None
) -> ContactMerge:
    """Merge contact `loser_id` into `survivor_id` (see the module's docstring); the merge's record."""
    survivor_id, loser_id = int(survivor_id), int(loser_id)
    if survivor_id == loser_id:
        raise MergeRefused(f"Contact {survivor_id} cannot be merged into itself.")
    with transaction.atomic():
        pair = Contact.objects.select_for_update().filter(pk__in=[survivor_id, loser_id]).order_by("pk").in_bulk()
        for pk in (survivor_id, loser_id):
            if pk not in pair:
                raise MergeRefused(f"Contact {pk} does not exist (merged or deleted meanwhile?).")
        survivor, loser = pair[survivor_id], pair[loser_id]
        _check_participants([survivor_id, loser_id])
        chosen = resolve_choices(survivor, loser, choices)
        values = merged_values(survivor, loser, chosen)
        _check_properties(values["properties"])
        merge = ContactMerge.objects.create(
            survivor_id=survivor_id, loser_id=loser_id, loser_email=loser.email, choices=chosen, merged_by=by
        )
        snapshot: dict[str, Any] = {"survivor": serialize([survivor]), "loser": serialize([loser])}
        snapshot["moved"] = _move(loser_id, survivor_id)
        records = {p.name: p.apply(merge, by) for p in _participants}
        # The tally is kept by triggers; the moved rows are kept by id.
        snapshot["cascaded"] = serialize(cascaded_rows(loser, leave_out=(*MOVED, ActivityTally)))
        writes.delete(Contact.objects.filter(pk=loser_id))
        _keep_alias(merge, survivor_id, given_up={survivor.email, loser.email} - {values["email"]})
        newest_change = LifecycleChange.objects.filter(contact_id=survivor_id).aggregate(top=models.Max("pk"))["top"]
        for name, value in values.items():
            setattr(survivor, concrete_field(Contact, name).attname, value)
        writes.save(survivor)
        snapshot["lifecycle_changes_made"] = list(
            LifecycleChange.objects.filter(contact_id=survivor_id, pk__gt=newest_change or 0).values_list(
                "pk", flat=True
            )
        )
        merge.snapshot, merge.participants = snapshot, records
        merge.save(update_fields=["snapshot", "participants"])
    return merge


def undo_merge(merge_id: int, *, by: User | None = None) -> ContactMerge:
    """Put back what merge `merge_id` changed; refused (saying why) when it cannot be exact."""
    with transaction.atomic():
        merge = ContactMerge.objects.select_for_update().filter(pk=merge_id).first()
        if merge is None:
            raise MergeRefused(f"Merge {merge_id} does not exist.")
        _check_undo(merge)
        contacts = Contact.objects.select_for_update().filter(pk=merge.survivor_id)
        if not contacts.exists():
            raise MergeRefused(
                f"Merge {merge.pk}: the surviving contact {merge.survivor_id} no longer exists, so the merge "
                "cannot be undone."
            )
        _check_participants([merge.survivor_id])
        snapshot = merge.snapshot
        merge.aliases.all().delete()
        writes.restore(snapshot["loser"])
        restore_rows(snapshot["cascaded"])
        for label, ids in snapshot["moved"].items():
            _move_back(label, ids, survivor_id=merge.survivor_id, loser_id=merge.loser_id)
        LifecycleChange.objects.filter(pk__in=snapshot["lifecycle_changes_made"]).delete()
        writes.restore(snapshot["survivor"])
        for participant in _participants:
            if participant.name in merge.participants:
                participant.undo(merge, merge.participants[participant.name], by)
        merge.undone_at, merge.undone_by = timezone.now(), by
        merge.save(update_fields=["undone_at", "undone_by"])
    return merge


def _keep_alias(merge: ContactMerge, survivor_id: int, *, given_up: set[str]) -> None:
    """The address the merge gave up (the loser's, or the survivor's own when it took the loser's)
    becomes an alias of the survivor; an older alias of the same address (given up by an earlier
    merge, taken again since and merged away now) is replaced."""
    ContactAlias.objects.bulk_create(
        [ContactAlias(email=email, contact_id=survivor_id, merge=merge) for email in sorted(given_up)],
        update_conflicts=True,
        unique_fields=["email"],
        update_fields=["contact", "merge", "created_at"],
    )


def _check_participants(contact_ids: list[int]) -> None:
    for participant in _participants:
        if participant.check is not None and (why := participant.check(contact_ids)):
            raise MergeRefused(why)


def _check_properties(properties: dict) -> None:
    errors = PropertyDefinition.objects.validate_properties(properties)
    if errors:
        raise MergeRefused("The merged custom properties do not validate: " + " ".join(errors))


def _check_undo(merge: ContactMerge) -> None:
    if merge.is_undone:
        raise MergeRefused(f"Merge {merge.pk} was already undone on {merge.undone_at:%Y-%m-%d %H:%M}.")
    later = (
        ContactMerge.objects.filter(pk__gt=merge.pk, undone_at=None)
        .filter(models.Q(survivor_id=merge.survivor_id) | models.Q(loser_id=merge.survivor_id))
        .order_by("-pk")
        .first()
    )
    if later is not None:
        raise MergeRefused(
            f"Merge {merge.pk}: contact {merge.survivor_id} took part in a later merge ({later.pk}); "
            "undo that one first."
        )
    if Contact.objects.filter(models.Q(pk=merge.loser_id) | models.Q(email=merge.loser_email)).exists():
        raise MergeRefused(
            f"Merge {merge.pk}: a contact with id {merge.loser_id} or e-mail {merge.loser_email} exists again; "
            "merge or change it before undoing."
        )


def _move(loser_id: int, survivor_id: int) -> dict[str, list[int]]:
    """Move the loser's activities, deals and lifecycle history to the survivor; their ids by model."""
    moved = {}
    for model in MOVED:
        rows = model._default_manager.filter(contact_id=loser_id)
        moved[model._meta.label] = list(rows.order_by("pk").values_list("pk", flat=True))
        if not moved[model._meta.label]:
            continue
        if model in writes.WRITTEN_MODELS:
            writes.update(rows, contact_id=survivor_id)
        else:  # history written by Contact.save(), aliases: no announcement of their own
            rows.update(contact_id=survivor_id)
    return moved


def _move_back(label: str, ids: list[int], *, survivor_id: int, loser_id: int) -> None:
    model = next(m for m in MOVED if m._meta.label == label)
    for start in range(0, len(ids), MOVE_CHUNK):
        rows = model._default_manager.filter(pk__in=ids[start : start + MOVE_CHUNK], contact_id=survivor_id)
        if model in writes.WRITTEN_MODELS:
            writes.update(rows, contact_id=loser_id)
        else:
            rows.update(contact_id=loser_id)
