"""Merging two companies that are one organisation, and undoing a merge exactly.

`merge_companies(survivor_id=, loser_id=, choices=, by=)` keeps the survivor and deletes the loser in
one transaction, as contacts/merging.py does for contacts:

- the survivor's fields take, field by field, its own value or the loser's (`choices`; by default
  its own where set, else the loser's; a flag such as "target account" set on either stays set;
  technologies joined). The domain may be the loser's: the loser is gone before the survivor is
  saved. The first-seen date is the earlier one;
- every row pointing at the loser (its contacts, its deals, and whatever another model may point
  at a company with) moves to the survivor, kept by id for undo;
- the duplicate search's own rows about the loser (its match keys, its candidate pairs) go with
  it, kept serialised in the CompanyMerge row, and come back on undo (a pair whose other company
  has been deleted since does not);
- the domain given up (the loser's, or the survivor's own when it took the loser's) becomes an
  alias of the survivor (CompanyAlias): an import, API upsert or enrichment naming it updates the
  survivor instead of creating the merged-away company again (contacts/ingest.py `aliased`). The
  loser's own aliases move to the survivor with its other rows.

`undo_company_merge(merge_id, by=)` puts back exactly what was there: the survivor's fields, the
loser with its id, its candidate pairs and keys, and the moved rows that still point at the
survivor; the merge's alias goes. Contacts and deals are written through contacts.writes, so the
contacts of both companies are announced and their segments refresh after commit (the catch-up).

A company merge needs no other app's part: contacts stay contacts (their memberships and export
snapshots are untouched); only their `company.*` values change, as with any edit of a company.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import models, transaction
from django.utils import timezone

from contacts import provenance, writes
from contacts.merging import BOTH, LOSER, SURVIVOR, MergeRefused, chosen_value, givers, overlay_choices
from contacts.models import Company, CompanyAlias, CompanyDuplicateCandidate, CompanyMatchKey, CompanyMerge
from contacts.row_snapshots import cascaded_rows, restore_rows, reverse_relations, serialize
from crmseg_site.model_fields import concrete_field

# Never chosen: bookkeeping.
FIXED_FIELDS = frozenset({"id", "created_at", "updated_at", "original_values", "enriched_at"})
TAG_FIELDS = frozenset({"technologies"})
FLAG_FIELDS = frozenset({"is_target_account", "is_competitor"})
# The duplicate search's rows go with the merged-away company (and come back on undo); every other
# row pointing at a company moves to the survivor.
LEFT_WITH_LOSER = (CompanyMatchKey, CompanyDuplicateCandidate)
MOVE_CHUNK = 5000


# -- survivorship -----------------------------------------------------------------------------


def choosable_fields() -> list[str]:
    """The company fields a merge chooses between, in form order."""
    return [f.name for f in Company._meta.concrete_fields if f.name not in FIXED_FIELDS]


def _is_set(value: object) -> bool:
    return value not in (None, "", [], {}, False)


def default_choices(survivor: Company, loser: Company) -> dict[str, str]:
    """Whose value each field keeps unless the operator says otherwise."""
    chosen = {}
    for name in choosable_fields():
        mine, theirs = _value(survivor, name), _value(loser, name)
        if name in TAG_FIELDS:
            chosen[name] = BOTH
        else:
            chosen[name] = LOSER if not _is_set(mine) and _is_set(theirs) else SURVIVOR
    return chosen


def resolve_choices(survivor: Company, loser: Company, choices: dict[str, str] | None) -> dict[str, str]:
    """`choices` over the defaults, checked: an unknown field or choice is refused by name."""
    return overlay_choices(
        default_choices(survivor, loser),
        choices,
        what="company",
        fixed_fields=FIXED_FIELDS,
        tag_fields=TAG_FIELDS,
        fixed_reason="the earlier or joined value",
    )


def merged_values(survivor: Company, loser: Company, chosen: dict[str, str]) -> dict[str, Any]:
    """The survivor's new field values (Company field name -> value)."""
    values: dict[str, Any] = {}
    for name in choosable_fields():
        values[name] = chosen_value(chosen[name], _value(survivor, name), _value(loser, name))
    values["created_at"] = min(survivor.created_at, loser.created_at)
    values["original_values"] = {**loser.original_values, **survivor.original_values}
    # Each kept value keeps its source: enriched where the companies giving it had it enriched.
    values["enriched_at"] = provenance.merged_marks(
        {path: givers(survivor, loser, side, path, value=_value) for path, side in chosen.items()}
    )
    return values


def _value(company: Company, name: str) -> Any:
    return getattr(company, concrete_field(Company, name).attname)


# -- merge and undo ---------------------------------------------------------------------------


def merge_companies(
    *, survivor_id: int, loser_id: int, choices: dict[str, str] | None = None, by: User | None = None
) -> CompanyMerge:
    """Merge company `loser_id` into `survivor_id` (see the module's docstring); the merge's record."""
    survivor_id, loser_id = int(survivor_id), int(loser_id)
    if survivor_id == loser_id:
        raise MergeRefused(f"Company {survivor_id} cannot be merged into itself.")
    with transaction.atomic():
        pair = Company.objects.select_for_update().filter(pk__in=[survivor_id, loser_id]).order_by("pk").in_bulk()
        for pk in (survivor_id, loser_id):
            if pk not in pair:
                raise MergeRefused(_missing(pk))
        survivor, loser = pair[survivor_id], pair[loser_id]
        chosen = resolve_choices(survivor, loser, choices)
        values = merged_values(survivor, loser, chosen)
        merge = CompanyMerge.objects.create(
            survivor_id=survivor_id, loser_id=loser_id, loser_name=loser.name, loser_domain=loser.domain,
            choices=chosen, merged_by=by,
        )  # fmt: skip
        snapshot: dict[str, Any] = {"survivor": serialize([survivor]), "loser": serialize([loser])}
        snapshot["moved"] = _move(loser_id, survivor_id)
        snapshot["cascaded"] = serialize(cascaded_rows(loser))
        writes.delete(Company.objects.filter(pk=loser_id))
        _keep_alias(merge, survivor_id, given_up={survivor.domain, loser.domain} - {values["domain"]})
        for name, value in values.items():
            setattr(survivor, concrete_field(Company, name).attname, value)
        writes.save(survivor)
        merge.snapshot = snapshot
        merge.save(update_fields=["snapshot"])
    return merge


def undo_company_merge(merge_id: int, *, by: User | None = None) -> CompanyMerge:
    """Put back what merge `merge_id` changed; refused (saying why) when it cannot be exact."""
    with transaction.atomic():
        merge = CompanyMerge.objects.select_for_update().filter(pk=merge_id).first()
        if merge is None:
            raise MergeRefused(f"Company merge {merge_id} does not exist.")
        _check_undo(merge)
        if not Company.objects.select_for_update().filter(pk=merge.survivor_id).exists():
            raise MergeRefused(
                f"Company merge {merge.pk}: the surviving company {merge.survivor_id} no longer exists, so the "
                "merge cannot be undone."
            )
        snapshot = merge.snapshot
        merge.aliases.all().delete()
        # The survivor first: it may hold the loser's domain, which the loser takes back.
        writes.restore(snapshot["survivor"])
        writes.restore(snapshot["loser"])
        restore_rows(_still_pairable(snapshot["cascaded"]))
        for relation, ids in snapshot["moved"].items():
            _move_back(relation, ids, survivor_id=merge.survivor_id, loser_id=merge.loser_id)
        merge.undone_at, merge.undone_by = timezone.now(), by
        merge.save(update_fields=["undone_at", "undone_by"])
    return merge


def _keep_alias(merge: CompanyMerge, survivor_id: int, *, given_up: set[str]) -> None:
    """The domain the merge gave up (the loser's, or the survivor's own when it took the loser's)
    becomes an alias of the survivor, replacing an older alias of the same domain."""
    CompanyAlias.objects.bulk_create(
        [CompanyAlias(domain=domain, company_id=survivor_id, merge=merge) for domain in sorted(given_up)],
        update_conflicts=True,
        unique_fields=["domain"],
        update_fields=["company", "merge", "created_at"],
    )


def _missing(pk: int) -> str:
    merged = CompanyMerge.objects.filter(loser_id=pk, undone_at=None).order_by("-pk").first()
    if merged is not None:
        return (
            f"Company {pk} was already merged into company {merged.survivor_id} (company merge {merged.pk}); "
            "undo that merge first to merge it otherwise."
        )
    return f"Company {pk} does not exist (merged or deleted meanwhile?)."


def _check_undo(merge: CompanyMerge) -> None:
    if merge.is_undone:
        raise MergeRefused(f"Company merge {merge.pk} was already undone on {merge.undone_at:%Y-%m-%d %H:%M}.")
    later = (
        CompanyMerge.objects.filter(pk__gt=merge.pk, undone_at=None)
        .filter(models.Q(survivor_id=merge.survivor_id) | models.Q(loser_id=merge.survivor_id))
        .order_by("-pk")
        .first()
    )
    if later is not None:
        raise MergeRefused(
            f"Company merge {merge.pk}: company {merge.survivor_id} took part in a later merge ({later.pk}); "
            "undo that one first."
        )
    survivor_domain = merge.snapshot["survivor"][0]["fields"]["domain"]
    taken = (
        Company.objects.filter(models.Q(pk=merge.loser_id) | models.Q(domain__in=[merge.loser_domain, survivor_domain]))
        .exclude(pk=merge.survivor_id)
        .first()
    )
    if taken is not None:
        raise MergeRefused(
            f"Company merge {merge.pk}: company {taken.pk} ({taken.domain}) has the id or the domain the merge "
            "would give back; merge or change it before undoing."
        )


def _still_pairable(rows: list[dict]) -> list[dict]:
    """The serialised rows less the candidate pairs whose other company is gone since the merge."""
    pair_label = CompanyDuplicateCandidate._meta.label_lower
    named = {row["fields"][side] for row in rows if row["model"] == pair_label for side in ("company_a", "company_b")}
    there = set(Company.objects.filter(pk__in=named).values_list("pk", flat=True))
    return [
        row
        for row in rows
        if row["model"] != pair_label or {row["fields"]["company_a"], row["fields"]["company_b"]} <= there
    ]


def _moving_relations() -> list[models.ForeignKey]:
    """The foreign keys pointing at a company whose rows move to the survivor."""
    return [
        relation.field
        for relation in reverse_relations(Company)
        if isinstance(relation, models.ManyToOneRel) and relation.related_model not in LEFT_WITH_LOSER
    ]


def _move(loser_id: int, survivor_id: int) -> dict[str, list[int]]:
    """Point every row that points at the loser at the survivor; their ids by "app.Model.field"."""
    moved = {}
    for fk in _moving_relations():
        rows = fk.model._default_manager.filter(**{fk.attname: loser_id})
        ids = list(rows.order_by("pk").values_list("pk", flat=True))
        if ids:
            moved[f"{fk.model._meta.label}.{fk.name}"] = ids
            _update(rows, fk, survivor_id)
    return moved


def _move_back(relation: str, ids: list[int], *, survivor_id: int, loser_id: int) -> None:
    fk = next(fk for fk in _moving_relations() if f"{fk.model._meta.label}.{fk.name}" == relation)
    for start in range(0, len(ids), MOVE_CHUNK):
        rows = fk.model._default_manager.filter(pk__in=ids[start : start + MOVE_CHUNK], **{fk.attname: survivor_id})
        _update(rows, fk, loser_id)


def _update(rows: models.QuerySet, fk: models.ForeignKey, company_id: int) -> None:
    """Contacts and deals through contacts.writes (their contacts are announced); other rows as they are."""
    if fk.model in writes.WRITTEN_MODELS:
        writes.update(rows, **{fk.attname: company_id})
    else:
        rows.update(**{fk.attname: company_id})
