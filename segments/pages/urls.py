from django.urls import path

from . import views

urlpatterns = [
    path("contacts/", views.contact_search, name="contacts-search"),
    path("contacts/<int:contact_id>/", views.contact_detail, name="contacts-detail"),
]
