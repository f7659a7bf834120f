from django.urls import path

from activation import segment_exports, views

app_name = "activation"

urlpatterns = [
    path("notifications/", views.notifications, name="notifications"),
    path("notifications/read/", views.mark_notifications_read, name="notifications-read"),
    path("segments/<int:segment_id>/exports/", segment_exports.segment_exports, name="segment-exports"),
    path("activations/<int:activation_id>/run/", segment_exports.run_now, name="run-now"),
]
