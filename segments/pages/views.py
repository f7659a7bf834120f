"""Function views for the Sales-facing contact pages, and the contact search's list actions for Operations."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from contacts.models import Contact
from crmseg_site.access import contact_reader_required, staff_required
from crmseg_site.replicas import replica_reads
from segments.list_admin import ListChoiceForm, apply_to_list, count_text
from segments.models import ListEditOperation

from .contact_page import contact_facts
from .contact_search import ContactSearchForm
from .paging import fetch_page, page_number, page_query

SEARCH_PAGE_SIZE = 25


@contact_reader_required
@replica_reads()
def contact_search(request: HttpRequest) -> HttpResponse:
    form = ContactSearchForm(request.GET, user=request.user)
    page = None
    if form.is_valid():
        page = fetch_page(form.search(), number=page_number(request.GET), size=SEARCH_PAGE_SIZE, count=True)
    ctx = {
        "section": "contacts",
        "form": form,
        "page": page,
        "next_query": page and page_query(request.GET, key="page", number=page.number + 1),
        "previous_query": page and page_query(request.GET, key="page", number=page.number - 1),
        "can_edit_lists": request.user.has_perm("segments.change_segment"),
        "query": request.GET.urlencode(),
    }
    return render(request, "contacts/search.html", ctx)


@staff_required
@require_POST
def contact_list_edit(request: HttpRequest) -> HttpResponse:
    """The search's "Add to static list…" / "Remove from static list…": the ticked contacts, or
    (scope=all) every contact the search finds, whatever their number; asks which list, then applies."""
    if not request.user.has_perm("segments.change_segment"):
        raise PermissionDenied("Changing static lists needs the permission to change segments.")
    search = ContactSearchForm(request.GET, user=request.user)
    back = f"{reverse('contacts-search')}?{request.GET.urlencode()}"
    operation = request.POST.get("operation")
    if operation not in ListEditOperation.values or not search.is_valid():
        messages.error(request, "Choose Add or Remove, on a valid search.")
        return HttpResponseRedirect(back)
    across = request.POST.get("scope") == "all"
    picked = [int(pk) for pk in request.POST.getlist("contact") if pk.isdigit()]
    contacts = search.matching() if across else Contact.objects.filter(pk__in=picked)
    form = ListChoiceForm(request.POST if "apply" in request.POST else None, operation=operation)
    if form.is_bound and form.is_valid():
        source = f"Contact search: {'all matching ' + request.GET.urlencode() if across else 'ticked contacts'}"
        text, level = apply_to_list(request, contacts, operation=operation, form=form, source=source)
        messages.add_message(request, level, text)
        if level == messages.SUCCESS:
            return HttpResponseRedirect(back)
    ctx = {
        "section": "contacts",
        "form": form,
        "operation": operation,
        "across": across,
        "picked": picked,
        "count": count_text(contacts),
        "query": request.GET.urlencode(),
        "back": back,
    }
    return render(request, "contacts/list_action.html", ctx)


@contact_reader_required
@replica_reads()
def contact_detail(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact.objects.select_related("company", "owner", "metrics"), pk=contact_id)
    number = page_number(request.GET, "activity_page")
    ctx = {
        "section": "contacts",
        "contact": contact,
        "metrics": getattr(contact, "metrics", None),
        **contact_facts(contact, activity_page_number=number, now=timezone.now()),
        "next_query": page_query(request.GET, key="activity_page", number=number + 1),
        "previous_query": page_query(request.GET, key="activity_page", number=number - 1),
    }
    return render(request, "contacts/detail.html", ctx)
