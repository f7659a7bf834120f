from django.urls import path

from . import analytics_views, rule_preview, segment_views, views

urlpatterns = [
    path("contacts/", views.contact_search, name="contacts-search"),
    path("contacts/<int:contact_id>/", views.contact_detail, name="contacts-detail"),
    path("contacts/lists/", views.contact_list_edit, name="contacts-list-edit"),
    path("segments/", segment_views.segment_overview, name="segments-overview"),
    path("segments/<int:segment_id>/", segment_views.segment_detail, name="segments-detail"),
    path("segments/analytics/", analytics_views.comparison_page, name="segments-analytics"),
    path("segments/analytics.csv", analytics_views.comparison_csv, name="segments-analytics-csv"),
    path("segments/analytics/overlap/", analytics_views.overlap_page, name="segments-overlap"),
    path("segments/<int:segment_id>/analytics/", analytics_views.segment_analytics, name="segments-analytics-detail"),
    path("segments/<int:segment_id>/refresh/", segment_views.segment_refresh, name="segments-refresh"),
    path("segments/<int:segment_id>/status/", segment_views.segment_status, name="segments-status"),
    path("segments/rules/preview/", rule_preview.rule_preview, name="segments-rule-preview"),
    path("segments/rules/explain/", rule_preview.rule_explain, name="segments-rule-explain"),
]
