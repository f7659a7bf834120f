from django.urls import path, re_path

from api.views import activation, analytics, common, contacts, personalization, predictions, segments, tasks

app_name = "api"

urlpatterns = [
    path("contacts/", contacts.ContactList.as_view(), name="contacts"),
    path("contacts/bulk-upsert/", contacts.contacts_bulk_upsert, name="contacts-bulk-upsert"),
    path("contacts/<int:pk>/", contacts.ContactDetail.as_view(), name="contact"),
    path("contacts/<int:pk>/segments/", segments.contact_segments, name="contact-segments"),
    path("contacts/<int:pk>/erase/", contacts.erase_contact, name="contact-erase"),
    path("contacts/<int:pk>/scores/", predictions.contact_scores_view, name="contact-scores"),
    path("models/", predictions.model_list, name="models"),
    path("models/<slug:name>/", predictions.model_detail, name="model"),
    path("companies/", contacts.CompanyList.as_view(), name="companies"),
    path("companies/bulk-upsert/", contacts.companies_bulk_upsert, name="companies-bulk-upsert"),
    path("companies/<int:pk>/", contacts.CompanyDetail.as_view(), name="company"),
    path("activities/", contacts.ActivityList.as_view(), name="activities"),
    path("activities/bulk/", contacts.activities_bulk, name="activities-bulk"),
    path("property-definitions/", contacts.PropertyDefinitionList.as_view(), name="property-definitions"),
    path("analytics/segments/", analytics.segment_comparison, name="analytics-segments"),
    path("analytics/overlap/", analytics.segment_overlap, name="analytics-overlap"),
    path("segments/", segments.SegmentList.as_view(), name="segments"),
    path("segments/validate/", segments.validate_segment_rule, name="segments-validate"),
    path("segments/preview/", segments.preview_segment_rule, name="segments-preview"),
    path("segments/<slug:slug>/", segments.SegmentDetail.as_view(), name="segment"),
    path("segments/<slug:slug>/members/", segments.SegmentMembers.as_view(), name="segment-members"),
    path("segments/<slug:slug>/history/", segments.SegmentHistory.as_view(), name="segment-history"),
    path("segments/<slug:slug>/refresh/", segments.refresh_segment, name="segment-refresh"),
    path("segments/<slug:slug>/members/add/", segments.add_members, name="segment-members-add"),
    path("segments/<slug:slug>/members/remove/", segments.remove_members, name="segment-members-remove"),
    re_path(r"^tasks/(?P<task_id>[0-9a-f]{32})/$", tasks.task_status, name="task"),
    path("destinations/", activation.DestinationList.as_view(), name="destinations"),
    path("destinations/<int:pk>/", activation.DestinationDetail.as_view(), name="destination"),
    path("activations/", activation.ActivationList.as_view(), name="activations"),
    path("activations/<int:pk>/", activation.ActivationDetail.as_view(), name="activation"),
    path("activations/<int:pk>/runs/", activation.ActivationRuns.as_view(), name="activation-runs"),
    path("activations/<int:pk>/run/", activation.run_activation, name="activation-run"),
    path("export-runs/<int:pk>/", activation.ExportRunDetail.as_view(), name="export-run"),
    path("export-runs/<int:pk>/download/<str:which>/", activation.download_export, name="export-run-download"),
    path("personalization/", personalization.personalization, name="personalization"),
    # (?s): a path with a newline (`segments/a%0Ab/`) is a JSON 404 too, not Django's HTML page.
    re_path(r"^(?P<path>(?s:.*))$", common.not_found, name="not-found"),
]
