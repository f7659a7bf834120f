"""Who may open which page.

Two roles matter outside the admin: Operations staff (`is_staff`) and Sales reps (the Sales group,
which holds the `contacts.view_contact` permission but is not staff). Product pages are read-only
for everyone; writes happen in the admin, which only staff may enter.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

View = Callable[..., HttpResponse]
SAFE_METHODS = ("GET", "HEAD")


def can_read_contacts(user) -> bool:
    return user.is_active and (user.is_staff or user.has_perm("contacts.view_contact"))


def signed_in_user(request: HttpRequest) -> User:
    """The person behind a request that a login check (an admin page, `login_required`) let through."""
    if not isinstance(request.user, User):
        raise PermissionDenied("Sign in first.")
    return request.user


def _guard(request: HttpRequest, *, allowed: Callable[[Any], bool], refusal: str) -> HttpResponse | None:
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


def client_address(request: HttpRequest) -> str | None:
    """The address a login attempt came from, for throttling: REMOTE_ADDR, or behind
    LOGIN_PROXY_COUNT reverse proxies the address the outermost one saw. Each proxy appends what it
    saw to X-Forwarded-For, so that one is the N-th from the right; entries further left come from
    the client and prove nothing."""
    remote = request.META.get("REMOTE_ADDR")
    count = settings.LOGIN_PROXY_COUNT
    if not count:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    return forwarded[-count] if len(forwarded) >= count else remote


def locked_out(request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None) -> HttpResponse:
    """What a locked-out login gets (django-axes calls it): 429 and a page saying what happened,
    for how long, and who can lift it sooner."""
    ctx = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    }
    return render(request, "registration/locked_out.html", ctx, status=429)


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
