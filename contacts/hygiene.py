"""List hygiene: each contact's reachability, kept set-based, and the fixes an operator can apply.

`check_hygiene()` gives every contact (or some) the first problem found, in Reachability's order:
an address that is not one (no @, spaces, two dots in a row, a domain without a dot), unsubscribed,
bounced hard (marked bounced, or a hard bounce report not followed by an e-mail opened or clicked:
the address works again), bounced soft (HYGIENE_SOFT_BOUNCE_LIMIT soft bounce reports in the last
HYGIENE_SOFT_BOUNCE_DAYS: a full mailbox or a busy server passes, so fewer do not count, and older
ones age out), a disposable mailbox domain, a mistyped mail domain (gmial.com: contacts.normalize's
suggestion, asked once per distinct domain, not per contact), a role address (info@, sales@ ...),
or inactive: known for HYGIENE_INACTIVE_DAYS with no engagement in them (any activity but a sales
touch; the sunset policy). One UPDATE writes the contacts whose reachability changed (announced,
so the global "unreachable" suppression of segments/catalog.py follows); a HygieneRun records the
counts after it, which the admin shows as a trend.

`correct_domain_typos(ids)` replaces mistyped domains with the one meant, keeping what was typed
in original_values; an address whose corrected form another contact has is left for the
duplicate review.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, CharField, Count, Exists, F, OuterRef, Q, Value, When
from django.db.models.functions import StrIndex, Substr
from django.utils import timezone

from contacts import writes
from contacts.models import Activity, ActivityKind, Contact, EmailStatus, HygieneRun, Reachability
from contacts.normalize import email_suggestion

# Mailboxes of a function, not a person: addressing them reaches whoever reads them, if anyone.
ROLE_LOCAL_PARTS = (
    "admin", "billing", "contact", "enquiries", "office", "hello", "help", "hr", "info", "jobs", "mail",
    "marketing", "media", "news", "noreply", "no-reply", "postmaster", "press", "sales", "support", "team",
    "webmaster", "careers", "accounts", "abuse", "donotreply",
)  # fmt: skip
# Throw-away mailbox services: an address there is gone within hours or days.
DISPOSABLE_DOMAINS = (
    "mailinator.com", "guerrillamail.com", "guerrillamail.net", "sharklasers.com", "10minutemail.com",
    "temp-mail.org", "tempmail.com", "tempmail.net", "yopmail.com", "yopmail.fr", "trashmail.com", "trashmail.de",
    "getnada.com", "dispostable.com", "maildrop.cc", "throwawaymail.com", "fakeinbox.com", "mailnesia.com",
    "mintemail.com", "mohmal.com", "emailondeck.com", "spamgourmet.com", "mytemp.email", "tempr.email",
    "discard.email", "burnermail.io", "inboxkitten.com", "mailcatch.com", "spambox.us", "33mail.com",
)  # fmt: skip
# What is not engagement: our own reaching out, and the mail service's delivery reports.
NOT_ENGAGEMENT = (ActivityKind.SALES_TOUCH, ActivityKind.EMAIL_BOUNCE_HARD, ActivityKind.EMAIL_BOUNCE_SOFT)
# What shows an address receives mail after a hard bounce.
MAIL_RECEIVED = (ActivityKind.EMAIL_OPEN, ActivityKind.EMAIL_CLICK)


@dataclass(frozen=True)
class Checked:
    run: HygieneRun

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {reach}" for reach, n in sorted(self.run.counts.items()))
        return f"{self.run.contacts} contacts checked, {self.run.changed} changed; now {counts or 'none'}"


def _domain():
    return Substr("email", StrIndex("email", Value("@")) + 1)


def typo_domains() -> dict[str, str]:
    """Mistyped mail domain -> the one meant, over the distinct domains of the contacts (one query)."""
    domains = Contact.objects.annotate(domain=_domain()).values_list("domain", flat=True).distinct().order_by()
    found = {}
    for domain in domains:
        suggestion = email_suggestion(f"x@{domain}") if domain else None
        if suggestion:
            found[domain] = suggestion.split("@", 1)[1]
    return found


def _any_suffix(suffixes: list[str]) -> Q:
    query = Q(pk__in=[])
    for suffix in suffixes:
        query |= Q(email__iendswith=suffix)
    return query


def reachability_expression(*, now: datetime, typos: dict[str, str]) -> Case:
    """Each contact's reachability as one SQL expression (Reachability's order: first problem wins)."""
    cutoff = now - timedelta(days=settings.HYGIENE_INACTIVE_DAYS)
    # Each activity test is a set of contacts computed once (IN), not a probe per contact (EXISTS):
    # inside a CASE, PostgreSQL cannot turn EXISTS into a join and probed the activity table three
    # times for each of a million contacts. check_hygiene gives the sets room to hash (work_mem).
    engaged = (
        Activity.objects.filter(occurred_at__gte=cutoff, occurred_at__lte=now)
        .exclude(kind__in=NOT_ENGAGEMENT)
        .values("contact_id")
    )
    invalid = (
        ~Q(email__contains="@")
        | Q(email__contains=" ")
        | Q(email__contains="..")
        | Q(email__startswith="@")
        | Q(email__regex=r"@[^.]*$")
        | Q(email__endswith=".")
    )
    return Case(
        When(invalid, then=Value(Reachability.INVALID)),
        When(email_status=EmailStatus.UNSUBSCRIBED, then=Value(Reachability.UNSUBSCRIBED)),
        When(
            Q(email_status=EmailStatus.BOUNCED) | Q(pk__in=_hard_bounces(now).values("contact_id")),
            then=Value(Reachability.BOUNCED),
        ),
        When(Q(pk__in=_soft_bounced(now)), then=Value(Reachability.SOFT_BOUNCED)),
        When(_any_suffix([f"@{d}" for d in DISPOSABLE_DOMAINS]), then=Value(Reachability.DISPOSABLE)),
        When(_any_suffix([f"@{d}" for d in sorted(typos)]), then=Value(Reachability.DOMAIN_TYPO)),
        When(
            Q(*[Q(email__istartswith=f"{part}@") for part in ROLE_LOCAL_PARTS], _connector=Q.OR),
            then=Value(Reachability.ROLE),
        ),
        When(Q(created_at__lt=cutoff) & ~Q(pk__in=engaged), then=Value(Reachability.INACTIVE)),
        default=Value(Reachability.REACHABLE),
        output_field=CharField(),
    )


def unreachable_reason() -> Case:
    """Each contact's reachability as the last check found it, read where it is stored (what the
    global "unreachable" suppression reads). A contact the check found reachable whose e-mail status
    became bounced or unsubscribed since is read as the next check will find it (the status comes
    first in Reachability's order, after an address that is not one)."""
    return Case(
        When(~Q(reachability=Reachability.REACHABLE), then=F("reachability")),
        When(email_status=EmailStatus.UNSUBSCRIBED, then=Value(Reachability.UNSUBSCRIBED)),
        When(email_status=EmailStatus.BOUNCED, then=Value(Reachability.BOUNCED)),
        default=Value(Reachability.REACHABLE),
        output_field=CharField(),
    )


def _hard_bounces(now: datetime):
    """Hard bounce reports after which no e-mail of ours was opened or clicked by that contact."""
    received_after = Activity.objects.filter(
        contact=OuterRef("contact"), kind__in=MAIL_RECEIVED, occurred_at__gt=OuterRef("occurred_at"),
        occurred_at__lte=now,
    )  # fmt: skip
    return Activity.objects.filter(kind=ActivityKind.EMAIL_BOUNCE_HARD, occurred_at__lte=now).exclude(
        Exists(received_after)
    )


def _soft_bounced(now: datetime):
    """The contacts with HYGIENE_SOFT_BOUNCE_LIMIT or more soft bounce reports in the last
    HYGIENE_SOFT_BOUNCE_DAYS."""
    return (
        Activity.objects.filter(
            kind=ActivityKind.EMAIL_BOUNCE_SOFT,
            occurred_at__gte=now - timedelta(days=settings.HYGIENE_SOFT_BOUNCE_DAYS),
            occurred_at__lte=now,
        )
        .order_by()
        .values("contact_id")
        .annotate(n=Count("pk"))
        .filter(n__gte=settings.HYGIENE_SOFT_BOUNCE_LIMIT)
        .values("contact_id")
    )


def check_hygiene(*, contact_ids: list[int] | None = None, now: datetime | None = None) -> Checked:
    """Recompute the reachability of every contact (or of `contact_ids`); one UPDATE of the changed."""
    now = now or timezone.now()
    clock = time.monotonic()
    typos = typo_domains()
    scope = Contact.objects.all() if contact_ids is None else Contact.objects.filter(pk__in=contact_ids)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = '256MB'")  # the activity sets hash in memory
        expression = reachability_expression(now=now, typos=typos)
        changing = scope.exclude(reachability=expression)
        # Reachability is derived: its change is not an edit of the contact (updated_at stays).
        changed = writes.update(changing, reachability=expression, updated_at=F("updated_at"))
        counts = dict(Contact.objects.values_list("reachability").annotate(n=Count("pk")).order_by())
        run = HygieneRun.objects.create(
            started_at=now,
            full=contact_ids is None,
            contacts=scope.count(),
            changed=changed,
            counts=counts,
            typo_domains=typos,
            duration_ms=round((time.monotonic() - clock) * 1000),
        )
    return Checked(run)


def correct_domain_typos(contact_ids: list[int]) -> tuple[int, list[str]]:
    """Correct the mistyped domains of these contacts; (how many, the addresses left because the
    corrected one exists already: duplicates to review)."""
    typos = typo_domains()
    contacts = list(
        Contact.objects.filter(pk__in=contact_ids)
        .filter(_any_suffix([f"@{d}" for d in sorted(typos)]))
        .only("email", "original_values")
    )
    fixed = {c.pk: f"{c.email.rsplit('@', 1)[0]}@{typos[c.email.rsplit('@', 1)[1]]}" for c in contacts}
    taken = set(Contact.objects.filter(email__in=fixed.values()).values_list("email", flat=True))
    corrected, left = [], []
    for contact in contacts:
        if fixed[contact.pk] in taken:
            left.append(contact.email)
            continue
        contact.original_values = {**contact.original_values, "email": contact.email}
        contact.email = fixed[contact.pk]
        corrected.append(contact)
    with transaction.atomic():
        writes.bulk_update(corrected, ["email", "original_values"])
        if corrected:
            check_hygiene(contact_ids=[c.pk for c in corrected])
    return len(corrected), left
