"""Making and checking API keys: `crmseg_<prefix>_<secret>`; the prefix finds the row, the hash proves the key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from django.utils import timezone

from api.models import ApiKey, validate_scopes

KEY_PREFIX = "crmseg"


class InvalidKey(Exception):
    """The presented key is malformed, unknown, expired or revoked (the message says which)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    *, name: str, scopes: list[str], expires_at: datetime | None = None, created_by=None
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plain text, which is never stored and cannot be shown again."""
    validate_scopes(scopes)
    prefix = secrets.token_hex(4)
    plain = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey(
        name=name,
        prefix=prefix,
        secret_hash=hash_key(plain),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
        created_by=created_by,
    )
    api_key.full_clean()
    api_key.save()
    return api_key, plain


def check_api_key(plain: str, *, now: datetime | None = None) -> ApiKey:
    """Return the usable ApiKey for `plain` or raise InvalidKey saying what is wrong with it."""
    now = now or timezone.now()
    parts = plain.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        raise InvalidKey("Malformed API key: expected crmseg_<prefix>_<secret>.")
    api_key = ApiKey.objects.filter(prefix=parts[1]).first()
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, hash_key(plain)):
        raise InvalidKey("Invalid API key.")
    if api_key.revoked_at is not None:
        raise InvalidKey("This API key has been revoked.")
    if api_key.expires_at is not None and api_key.is_expired(now=now):
        raise InvalidKey(f"This API key expired at {api_key.expires_at.isoformat()}.")
    return api_key
