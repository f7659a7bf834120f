from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.utils.functional import lazy
from django.views.generic import RedirectView

from api.views.common import not_found
from api.views.docs import DocsView, SchemaView

from . import database_admin, views

admin.site.site_header = "crmseg operations"
admin.site.site_title = "crmseg"
admin.site.index_title = "Segments, contacts and activation"

urlpatterns = [
    path("", views.home, name="home"),
    # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says.
    path("favicon.ico", RedirectView.as_view(url=lazy(static, str)("crmseg/favicon.svg"), permanent=True)),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=False), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("segments.pages.urls")),
    path("admin/database/", admin.site.admin_view(database_admin.database_page), name="admin-database"),
    path("admin/", admin.site.urls),
    path("activation/", include("activation.urls")),
    path("api/v1/", include("api.urls")),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/docs/", DocsView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^api/(?P<path>(?s:.*))$", not_found),
]
