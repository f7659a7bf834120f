"""Who may open which page.

Two roles matter outside the admin: Operations staff (`is_staff`) and Sales reps (the Sales group,
which holds the `contacts.view_contact` permission but is not staff). Product pages are read-only
for everyone; writes happen in the admin, which only staff may enter.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

View = Callable[..., HttpResponse]
SAFE_METHODS = ("GET", "HEAD")


def can_read_contacts(user) -> bool:
    return user.is_active and (user.is_staff or user.has_perm("contacts.view_contact"))


def _guard(request: HttpRequest, *, allowed: Callable[[object], bool], refusal: str) -> HttpResponse | None:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not allowed(request.user):
        raise PermissionDenied(refusal)
    return None


def contact_reader_required(view: View) -> View:
    """Sales reps and staff may read; nobody writes through these pages."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        refused = _guard(request, allowed=can_read_contacts, refusal="Contact pages are for Sales and Operations.")
        if refused:
            return refused
        if request.method not in SAFE_METHODS:
            raise PermissionDenied("This page is read-only; changes are made by Operations in the admin.")
        return view(request, *args, **kwargs)

    return wrapper


def staff_required(view: View) -> View:
    """Operations pages outside the admin proper (segment pages, rule preview)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        refused = _guard(
            request, allowed=lambda user: user.is_active and user.is_staff, refusal="This page is for Operations staff."
        )
        return refused or view(request, *args, **kwargs)

    return wrapper


class AdminAccessMiddleware:
    """Answer 403 to signed-in non-staff users anywhere under the admin.

    Django's admin would show its own login form instead, inviting a Sales rep to try other
    credentials; a plain refusal says what is going on. Anonymous visitors still get the login form.
    """

    def __init__(self, get_response: View) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated and not user.is_staff and request.path.startswith(reverse("admin:index")):
            raise PermissionDenied("The operations admin is for Operations staff; Sales reps use the contact pages.")
        return self.get_response(request)
