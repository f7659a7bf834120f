"""Function views for the Sales-facing contact pages."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from contacts.models import Contact
from crmseg_site.access import contact_reader_required

from .contact_page import contact_facts
from .contact_search import ContactSearchForm
from .paging import fetch_page, page_number, page_query

SEARCH_PAGE_SIZE = 25


@contact_reader_required
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
    }
    return render(request, "contacts/search.html", ctx)


@contact_reader_required
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
