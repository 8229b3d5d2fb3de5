"""Django admin for the project-wide records, and the admin site's access rules.

The admin site is for the admin role (not Django's ``is_staff`` flag), and it signs
people in and out through the control plane's own audited login and logout pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from controlplane.models import AuditEvent, GitHubUsage, TaskStatus
from controlplane.roles import Role, has_role
from controlplane.views import LogoutView


def _site_has_permission(request: HttpRequest) -> bool:
    return has_role(request.user, Role.ADMIN)


@login_not_required
def _site_login(request: HttpRequest, extra_context: Any = None) -> HttpResponse:
    """Admins already signed in go where they were heading; everyone else goes to
    the control plane's login page (which audits every attempt)."""
    target = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("admin:index")
    if has_role(request.user, Role.ADMIN):
        return HttpResponseRedirect(target)
    return redirect_to_login(target, resolve_url("login"))


def _site_logout(request: HttpRequest, extra_context: Any = None) -> HttpResponse:
    return LogoutView.as_view()(request)


admin.site.has_permission = _site_has_permission  # type: ignore[method-assign]
admin.site.login = _site_login  # type: ignore[method-assign]
admin.site.logout = _site_logout  # type: ignore[method-assign,assignment]
admin.site.site_header = "Runner control plane"
admin.site.site_title = "Runner control plane admin"
admin.site.site_url = "/"


if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:  # ModelAdmin is generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin


class ReadOnlyAdmin(_ModelAdmin):
    """Records written only by the application: visible, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_name", "action", "target_repr", "outcome"]
    list_filter = ["outcome", "action"]
    search_fields = ["actor_name", "action", "target_id", "target_repr", "request_id"]
    date_hierarchy = "created_at"
    list_select_related = False


@admin.register(GitHubUsage)
class GitHubUsageAdmin(ReadOnlyAdmin):
    list_display = [
        "requests_total",
        "not_modified_total",
        "errors_total",
        "rate_limited_total",
        "rate_limit_remaining",
        "observed_at",
    ]


@admin.register(TaskStatus)
class TaskStatusAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "last_success_at",
        "last_failure_at",
        "last_duration_seconds",
        "last_error",
    ]
