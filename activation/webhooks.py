"""Signed webhook delivery with bounded retries, shared by exports and automations.

Every request is a JSON POST carrying:

- ``X-Crmseg-Signature: sha256=<hex>``: HMAC-SHA256 of the exact request body bytes, keyed with
  the destination's secret (UTF-8). Receivers recompute it over the raw body and compare in
  constant time.
- ``Idempotency-Key: <key>``: the same for every retry of one batch, so a receiver that saw a
  batch already can acknowledge it without applying it twice.

5xx answers, 429, timeouts and connection errors are retried with exponential backoff
(``ACTIVATION_WEBHOOK_MAX_ATTEMPTS`` tries in all, sleeping ``ACTIVATION_WEBHOOK_BACKOFF_SECONDS``
× 2^n between them, at most ``ACTIVATION_WEBHOOK_MAX_BACKOFF_SECONDS``). Other 4xx answers and
redirects fail at once: repeating the same request cannot fix them.

Hosts are resolved and refused when any address is not public by the ipaddress module's
classification (loopback, private, link-local, multicast, reserved, unspecified, not global) or lies
in EXTRA_NON_PUBLIC, unless the destination is marked internal (which also allows http; only a
superuser or a key with the activations:internal scope may mark one). The check runs again before
every delivery, and the request connects to the address that was checked (TLS still verifies the
host name), so a later DNS answer cannot point it somewhere else (DNS rebinding).
This module knows nothing of the models: it takes anything with url, secret and is_internal.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

SIGNATURE_HEADER = "X-Crmseg-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class WebhookTarget(Protocol):
    url: str
    secret: str
    is_internal: bool


class WebhookError(Exception):
    """Delivery failed for good; the message says which URL, what came back and after how many tries."""


@dataclass(frozen=True)
class Delivery:
    status: int
    attempts: int


def check_url(url: str, *, internal: bool) -> str | None:
    """Refuse a URL a webhook must not call (ValidationError with the reason).

    Returns the checked public address to connect to, or None for an internal destination.
    """
    parts = urlsplit(url)
    allowed_schemes = ("https", "http") if internal else ("https",)
    if parts.scheme not in allowed_schemes:
        raise ValidationError(f"Webhook URL {url!r} must use https (plain http only for internal destinations).")
    if not parts.hostname:
        raise ValidationError(f"Webhook URL {url!r} has no host name.")
    if internal:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValidationError(f"Webhook host {parts.hostname!r} does not resolve ({exc}).") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if _is_non_public(address):
            raise ValidationError(
                f"Webhook host {parts.hostname!r} resolves to {address}, a loopback, private, link-local or "
                "otherwise non-public address; mark the destination internal if that is intended."
            )
    return str(infos[0][4][0])


# Non-public ranges the ipaddress module's flags leave out (Python 3.11): carrier-grade NAT (cloud
# metadata services live there, e.g. 100.100.100.200), 6to4 (which wraps any IPv4 address, private
# ones included) and the deprecated IPv6 site-local range that some stacks still route.
EXTRA_NON_PUBLIC = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("2002::/16"),
    ipaddress.ip_network("fec0::/10"),
)


def _is_non_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        not address.is_global
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or any(address in network for network in EXTRA_NON_PUBLIC if network.version == address.version)
    )


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect could point anywhere, including inside our network: treat it as an answer.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a host name, connecting to an address checked beforehand; TLS verifies the name."""

    def __init__(self, *args, pinned_address: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pinned_address = pinned_address
        # http.client opens the socket through this attribute, with (host, port).
        self._create_connection = self._connect_pinned

    def _connect_pinned(self, address: tuple[str, int], *args, **kwargs) -> socket.socket:
        return socket.create_connection((self.pinned_address, address[1]), *args, **kwargs)


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, pinned_address: str) -> None:
        super().__init__()
        self.pinned_address = pinned_address

    def https_open(self, req):
        connection = functools.partial(PinnedHTTPSConnection, pinned_address=self.pinned_address)
        return self.do_open(connection, req)  # the default TLS context: certificate and host name checked


def _opener_for(pinned_address: str | None) -> urllib.request.OpenerDirector:
    if pinned_address is None:
        return urllib.request.build_opener(_NoRedirect)
    return urllib.request.build_opener(_NoRedirect, _PinnedHTTPSHandler(pinned_address))


def post_json(
    target: WebhookTarget,
    payload: object,
    *,
    idempotency_key: str,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST payload to target's URL, signed, retrying transient failures; raise WebhookError when it gives up."""
    opener = _opener_for(check_url(target.url, internal=target.is_internal))
    body = encode(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "crmseg-webhook/1",
        SIGNATURE_HEADER: sign(body, target.secret),
        IDEMPOTENCY_HEADER: idempotency_key,
    }
    max_attempts = settings.ACTIVATION_WEBHOOK_MAX_ATTEMPTS
    last_problem = ""
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            sleep(_backoff(attempt - 1))
        request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=settings.ACTIVATION_WEBHOOK_TIMEOUT_SECONDS) as response:
                return Delivery(status=response.status, attempts=attempt)
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode(errors="replace")
            exc.close()
            last_problem = f"HTTP {exc.code} {detail!r}".strip()
            if not _retryable(exc.code):
                raise WebhookError(f"{target.url} refused the batch: {last_problem} (attempt {attempt}).") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            last_problem = f"{type(reason).__name__}: {reason}"
    raise WebhookError(f"{target.url} failed after {max_attempts} attempts; last: {last_problem}.")


def _retryable(status: int) -> bool:
    return status >= 500 or status == 429


def _backoff(retry: int) -> float:
    delay = settings.ACTIVATION_WEBHOOK_BACKOFF_SECONDS * (2 ** (retry - 1))
    return min(delay, settings.ACTIVATION_WEBHOOK_MAX_BACKOFF_SECONDS)
