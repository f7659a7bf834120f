from django.urls import path

from activation import views

app_name = "activation"

urlpatterns = [
    path("notifications/", views.notifications, name="notifications"),
    path("notifications/read/", views.mark_notifications_read, name="notifications-read"),
]
