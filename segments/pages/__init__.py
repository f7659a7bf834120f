"""Read-only product pages that need segment data: contact search and contact page for Sales reps.

They live in `segments` because they show segment membership (contacts never imports segments).
"""
