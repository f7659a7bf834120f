"""Pages for signed-in users: the notifications automations sent them."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from activation.models import Notification
from crmseg_site.access import signed_in_user


@login_required
def notifications(request: HttpRequest) -> HttpResponse:
    mine = Notification.objects.filter(recipient=signed_in_user(request)).select_related("contact")
    ctx = {"notifications": mine[:100], "unread": mine.unread().count()}
    return render(request, "activation/notifications.html", ctx)


@login_required
@require_POST
def mark_notifications_read(request: HttpRequest) -> HttpResponse:
    Notification.objects.filter(recipient=signed_in_user(request)).unread().update(read_at=timezone.now())
    return redirect("activation:notifications")
