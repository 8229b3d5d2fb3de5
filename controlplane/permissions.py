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
