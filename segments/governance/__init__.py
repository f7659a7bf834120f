"""Segment governance: owners, review cadences, reviews with snapshots (issue 17).

Public functions (what the admin, the API and the daily job call):

- `cadence.schedules(segments, today=...)`: each segment's cadence, last review and next due date per kind.
- `cadence.add_months(day, months)` / `cadence.due_after(day, cadence)`: the calendar arithmetic.
- `reviews.record_review(segment, kind=..., decision=..., ...)`: a checked, immutable review with its snapshot.
- `snapshot.take_snapshot(segment, now=...)`: the figures a review keeps (size, changes, rates, usage).
- `usage.uses(segment_ids)`: what points at each segment from other apps (activations, automations...).
"""
