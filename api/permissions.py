"""Scope checks. A key has the scopes it was given; a signed-in user has those of their group."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from api.models import READ_SCOPES, SUPERUSER_SCOPES, ApiKey, Scope
from contacts.roles import OPERATIONS, SALES


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"

    def __init__(self, scopes: tuple[str, ...], *, holder: str) -> None:
        wanted = " or ".join(f"'{scope}'" for scope in scopes)
        super().__init__(f"{holder} lacks the {wanted} scope needed for this request.")
        self.scopes = scopes


def user_scopes(user) -> frozenset[str]:
    """Superusers may do everything; Operations all but SUPERUSER_SCOPES; Sales may read."""
    if not user.is_active:
        return frozenset()
    if user.is_superuser:
        return frozenset(Scope.values)
    groups = set(user.groups.values_list("name", flat=True))
    if OPERATIONS in groups and user.is_staff:
        return frozenset(Scope.values) - SUPERUSER_SCOPES
    if SALES in groups or OPERATIONS in groups:
        return READ_SCOPES
    return frozenset()


# Each request's scopes, worked out once (a check may ask several times per request).
_SCOPES: WeakKeyDictionary[Request, frozenset[str]] = WeakKeyDictionary()


def request_scopes(request: Request) -> frozenset[str]:
    cached = _SCOPES.get(request)
    if cached is None:
        cached = frozenset(request.auth.scopes) if isinstance(request.auth, ApiKey) else user_scopes(request.user)
        _SCOPES[request] = cached
    return cached


def require_scopes(request: Request, *scopes: str) -> None:
    """Raise 401 for an anonymous caller, 403 naming the scope for one lacking all of `scopes`."""
    if not (request.user and request.user.is_authenticated):
        raise exceptions.NotAuthenticated("Authentication required: send 'Authorization: Bearer <api key>' or sign in.")
    if not request_scopes(request) & set(scopes):
        holder = "This API key" if isinstance(request.auth, ApiKey) else "Your role"
        raise MissingScope(scopes, holder=holder)


def scoped(*, read: str | tuple[str, ...], write: str | tuple[str, ...] | None = None) -> type:
    """A permission class: safe methods need one of `read`, the others one of `write`."""
    read_scopes = (read,) if isinstance(read, str) else tuple(read)
    write_scopes = (write,) if isinstance(write, str) else tuple(write or ())

    class ScopePermission(permissions.BasePermission):
        scopes_read = read_scopes
        scopes_write = write_scopes

        def has_permission(self, request: Request, view) -> bool:
            if request.method in permissions.SAFE_METHODS:
                require_scopes(request, *read_scopes)
            else:
                require_scopes(request, *(write_scopes or read_scopes))
            return True

    ScopePermission.__name__ = f"Scope_{'_'.join(read_scopes + write_scopes)}"
    return ScopePermission


def describe_caller(request: Request) -> str:
    """Who made a request, for audit fields: the API key by name and public prefix, or the user."""
    if isinstance(request.auth, ApiKey):
        return f"API key {request.auth.name!r} (crmseg_{request.auth.prefix}_…)"
    return f"user {request.user.get_username()!r} (id {request.user.pk})"


def acting_user(request: Request):
    """The signed-in person behind a request, or None for an API key (recorded as changed_by)."""
    user = request.user
    return user if getattr(user, "pk", None) is not None and not isinstance(request.auth, ApiKey) else None
