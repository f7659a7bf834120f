"""Rule history: every version of a segment's rule in plain words, side by side, with its author,
note and the segment's size before and after.

The words come from segments/rules/wording.py (`compare_rules`), the one wording table the
explainer and the builder read too. The segment page, the admin and the API show these rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from segments.models import RuleVersion
from segments.rules.registry import Field
from segments.rules.wording import DiffRow, compare_rules, segment_names


@dataclass(frozen=True)
class VersionDiff:
    version: RuleVersion
    rows: list[DiffRow]

    @property
    def sizes(self) -> str:
        """'1,200 → 950 members', or '1,200 members before; after: not built yet'."""
        before, after = self.version.size_before, self.version.size_after
        if before is None:
            return "size before not recorded"
        if after is None:
            return f"{before:,} members before; after: not built yet"
        return f"{before:,} → {after:,} members"

    def as_dict(self) -> dict:
        version = self.version
        return {
            "id": version.pk,
            "changed_at": version.changed_at.isoformat(),
            "changed_by": version.changed_by.get_username() if version.changed_by else None,
            "approved_by": version.approved_by.get_username() if version.approved_by else None,
            "note": version.note,
            "size_before": version.size_before,
            "size_after": version.size_after,
            "old_rule": version.old_rule,
            "new_rule": version.new_rule,
            "diff": [diff_row_dict(row) for row in self.rows],
        }


def diff_row_dict(row: DiffRow) -> dict:
    return {
        "change": row.change,
        "before": row.before.text if row.before else None,
        "before_depth": row.before.depth if row.before else None,
        "after": row.after.text if row.after else None,
        "after_depth": row.after.depth if row.after else None,
    }


def version_diffs(versions: Iterable[RuleVersion], *, fields: dict[str, Field]) -> list[VersionDiff]:
    """Each version as its rule before and after in words (one query for the segment names they read)."""
    versions = list(versions)
    names = segment_names(*(rule for v in versions for rule in (v.old_rule, v.new_rule)))
    return [VersionDiff(v, compare_rules(v.old_rule, v.new_rule, fields=fields, segment_names=names)) for v in versions]
