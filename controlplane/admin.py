"""Django admin for the project-wide records, and the admin site's access rules.

The admin site is for the admin role (not Django's ``is_staff`` flag), and it signs
people in and out through the control plane's own audited login and logout pages.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from controlplane import audit
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


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class AuditedAdmin(_ModelAdmin):
    """A change made in the admin is audited like the same change through the API:
    ``<object>.create``, ``<object>.update`` with the names of the fields changed
    (never their values: a field may hold a secret's digest or a token's hash) and
    ``<object>.delete``, each marked ``via=admin``. Bulk deletes are audited one
    row per object."""

    # The object part of the action names; the model's name in snake case if blank.
    audit_object = ""

    def audit_name(self) -> str:
        return self.audit_object or _snake(self.model.__name__)

    def save_model(
        self, request: HttpRequest, obj: Any, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if change and not form.changed_data:
            return  # saved unchanged (its inlines audit themselves)
        verb = "update" if change else "create"
        detail: dict[str, Any] = {"via": "admin"}
        if change:
            detail["fields"] = sorted(form.changed_data)
        audit.record(request.user, f"{self.audit_name()}.{verb}", obj, **detail)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        # Recorded first, while the object still has its id.
        audit.record(request.user, f"{self.audit_name()}.delete", obj, via="admin")
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            audit.record(request.user, f"{self.audit_name()}.delete", obj, via="admin")
        super().delete_queryset(request, queryset)


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


# Celery beat's schedules (django-celery-beat's own admin pages), audited: an edit
# here changes when sweeps, syncs and audits run.
def _audited_beat_admin() -> None:
    from django_celery_beat import admin as beat_admin
    from django_celery_beat.models import (
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
    )

    class PeriodicTaskAdmin(AuditedAdmin, beat_admin.PeriodicTaskAdmin):  # type: ignore[misc]
        audit_object = "periodic_task"

        def _audit_bulk(self, request: HttpRequest, queryset: Any, verb: str) -> None:
            for task in queryset:
                audit.record(request.user, f"periodic_task.{verb}", task, via="admin")

        def enable_tasks(self, request: HttpRequest, queryset: Any) -> None:
            self._audit_bulk(request, queryset, "enable")
            super().enable_tasks(request, queryset)

        def disable_tasks(self, request: HttpRequest, queryset: Any) -> None:
            self._audit_bulk(request, queryset, "disable")
            super().disable_tasks(request, queryset)

        def toggle_tasks(self, request: HttpRequest, queryset: Any) -> None:
            self._audit_bulk(request, queryset, "toggle")
            super().toggle_tasks(request, queryset)

        def run_tasks(self, request: HttpRequest, queryset: Any) -> None:
            self._audit_bulk(request, queryset, "run")
            super().run_tasks(request, queryset)

    class IntervalScheduleAdmin(AuditedAdmin, beat_admin.IntervalScheduleAdmin):  # type: ignore[misc]
        audit_object = "interval_schedule"

    class CrontabScheduleAdmin(AuditedAdmin, beat_admin.CrontabScheduleAdmin):  # type: ignore[misc]
        audit_object = "crontab_schedule"

    for model, model_admin in (
        (PeriodicTask, PeriodicTaskAdmin),
        (IntervalSchedule, IntervalScheduleAdmin),
        (CrontabSchedule, CrontabScheduleAdmin),
    ):
        if admin.site.is_registered(model):
            admin.site.unregister(model)
        admin.site.register(model, model_admin)


_audited_beat_admin()
