"""The start page only sends people where their work is."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from .access import can_read_contacts


@login_required
def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_staff:
        return redirect("segments-overview")
    if can_read_contacts(request.user):
        return redirect("contacts-search")
    raise PermissionDenied("Your account has no role yet; ask Operations to add you to Sales or Operations.")
