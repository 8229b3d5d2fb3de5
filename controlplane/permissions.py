"""Role permissions for the REST API and a decorator for HTML views.

Compose them with ``&`` and ``|`` (e.g. ``IsViewer & ReadOnly | IsAdmin``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import SAFE_METHODS, BasePermission

from controlplane.roles import Role, has_role

if TYPE_CHECKING:  # rest_framework.views imports DRF settings, which import us
    from rest_framework.request import Request
    from rest_framework.views import APIView


class _HasRole(BasePermission):
    role: Role = Role.ADMIN
    message = "This needs a role you do not have."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return has_role(request.user, self.role)


class IsViewer(_HasRole):
    role = Role.VIEWER
    message = "This needs the viewer, sre or admin role."


class IsSRE(_HasRole):
    role = Role.SRE
    message = "This needs the sre or admin role."


class IsAdmin(_HasRole):
    role = Role.ADMIN
    message = "This needs the admin role."


def lowest_sufficient_role(request: Request, view: APIView) -> Role | None:
    """The lowest role with which this request would have passed the view's
    permissions, so a denial can name it. DRF's ``&``/``|`` composition drops the
    operands' messages, so each role is tried in turn on the cached role of the
    request's user (see ``role_of``); the other permissions (e.g. ``ReadOnly``) are
    evaluated as they are."""
    user = request.user
    if not user.is_authenticated or not user.is_active:
        return None
    missing = object()
    actual = getattr(user, "_controlplane_role", missing)
    try:
        for role in (Role.VIEWER, Role.SRE, Role.ADMIN):
            setattr(user, "_controlplane_role", role)  # noqa: B010
            if all(p.has_permission(request, view) for p in view.get_permissions()):
                return role
    finally:
        if actual is missing:
            delattr(user, "_controlplane_role")
        else:
            setattr(user, "_controlplane_role", actual)  # noqa: B010
    return None


def role_message(role: Role) -> str:
    names = [r.label for r in Role if r >= role and r != Role.NONE]
    if len(names) == 1:
        return f"This needs the {names[0]} role."
    return f"This needs the {', '.join(names[:-1])} or {names[-1]} role."


class ReadOnly(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.method in SAFE_METHODS


ViewFunc = Callable[..., HttpResponse]


def role_required(role: Role) -> Callable[[ViewFunc], ViewFunc]:
    """Deny (403) an HTML view to users below ``role``; anonymous users are sent to
    the login page by ``LoginRequiredMiddleware`` before this runs."""

    def decorator(view: ViewFunc) -> ViewFunc:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, role):
                raise PermissionDenied(f"This page needs the {role.label} role.")
            return view(request, *args, **kwargs)

        wrapper.required_role = role  # type: ignore[attr-defined]
        return wrapper

    return decorator
