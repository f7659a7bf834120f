from django.urls import path

from . import rule_preview, segment_views, views

urlpatterns = [
    path("contacts/", views.contact_search, name="contacts-search"),
    path("contacts/<int:contact_id>/", views.contact_detail, name="contacts-detail"),
    path("segments/", segment_views.segment_overview, name="segments-overview"),
    path("segments/<int:segment_id>/", segment_views.segment_detail, name="segments-detail"),
    path("segments/<int:segment_id>/refresh/", segment_views.segment_refresh, name="segments-refresh"),
    path("segments/<int:segment_id>/status/", segment_views.segment_status, name="segments-status"),
    path("segments/rules/preview/", rule_preview.rule_preview, name="segments-rule-preview"),
    path("segments/rules/explain/", rule_preview.rule_explain, name="segments-rule-explain"),
]
