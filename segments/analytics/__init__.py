"""Segment analytics: outcomes credited to the segments a contact was in when they happened.

Public functions (what pages, the API, governance and experiments call):

- `measures.segment_measures(segment, period)`: one segment's (or the database's) measures with intervals.
- `measures.compare_segments(period)`: every active segment beside the database, flagged.
- `measures.channel_matrix(period)`: response rate by segment and channel, with the database row.
- `measures.measure_series(segment, grain, first, last)`: a segment's measures period by period.
- `measures.campaign_response(segment, period)`: responders per campaign.
- `overlap.overlap(segments)`: pairwise shared members and Jaccard index (up to 30 segments).
- `updates.update_analytics()` / `updates.backfill(since)`: keep the stored rollups current.
- `rollup.compute(periods, segment_ids=...)` / `rollup.compute_and_store(...)`: the rollups themselves.
"""
