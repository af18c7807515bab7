"""Roles are Django groups: operator, support, integration (spec section 6)."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from microgrid.common.errors import DomainError

OPERATOR = "operator"
SUPPORT = "support"
INTEGRATION = "integration"
ALL_ROLES = (OPERATOR, SUPPORT, INTEGRATION)

READERS = frozenset({OPERATOR, SUPPORT})
WRITERS = frozenset({OPERATOR, SUPPORT})
SUPPORT_ONLY = frozenset({SUPPORT})
INGEST = frozenset({INTEGRATION, SUPPORT})

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def user_roles(user) -> frozenset[str]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, "_microgrid_roles", None)
    if cached is None:
        if user.is_superuser:
            cached = frozenset(ALL_ROLES)
        else:
            cached = frozenset(user.groups.values_list("name", flat=True)) & set(ALL_ROLES)
        user._microgrid_roles = cached
    return cached


def has_any_role(user, roles) -> bool:
    return bool(user_roles(user) & set(roles))


class RolePermission(BasePermission):
    """Allows a request when the user has one of the roles the view names for its method.

    Views set `read_roles` (safe methods) and `write_roles`, or override
    `roles_for(method)`.
    """

    def has_permission(self, request, view) -> bool:
        if not getattr(request.user, "is_authenticated", False):
            return False
        roles_for = getattr(view, "roles_for", None)
        if roles_for is not None:
            allowed = roles_for(request.method)
        elif request.method in SAFE_METHODS:
            allowed = getattr(view, "read_roles", READERS)
        else:
            allowed = getattr(view, "write_roles", WRITERS)
        if has_any_role(request.user, allowed):
            return True
        raise role_refusal(request.user, allowed, request.method)


def role_refusal(user, allowed, method: str | None = None):
    """403 PERMISSION_DENIED naming the roles that would be allowed and the caller's own."""
    wanted = sorted(allowed)
    mine = sorted(user_roles(user))
    action = f"{method} here" if method else "this"
    return DomainError(
        "PERMISSION_DENIED",
        f"{action} needs the role {' or '.join(wanted)}; "
        f"you have {', '.join(mine) if mine else 'no role'}",
        {"allowed_roles": wanted, "your_roles": mine},
        status=403,
    )


class IsCanonicalReader(RolePermission):
    """The default: operators and support staff."""


class AnyRole(BasePermission):
    """Any user with a role, whatever the method: the API's schema and docs."""

    def has_permission(self, request, view) -> bool:
        if not getattr(request.user, "is_authenticated", False):
            return False
        if has_any_role(request.user, ALL_ROLES):
            return True
        raise role_refusal(request.user, ALL_ROLES, request.method)
