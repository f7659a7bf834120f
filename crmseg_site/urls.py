from django.contrib import admin
from django.urls import path

admin.site.site_header = "crmseg operations"
admin.site.site_title = "crmseg"
admin.site.index_title = "Segments, contacts and activation"

urlpatterns = [
    path("admin/", admin.site.urls),
]
