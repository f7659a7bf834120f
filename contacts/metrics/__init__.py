"""Behavioural, value and lifecycle measures per contact (ContactMetrics), computed set-based.

`compute_metrics(as_of=..., contact_ids=...)` is the entry point; the formulas are documented in
contacts/metrics/sql.py, next to the SQL that implements them.
"""
