"""Admin registrations; each area keeps its own module."""

from activation import automation_admin, campaign_admin, experiment_admin, export_admin  # noqa: F401
