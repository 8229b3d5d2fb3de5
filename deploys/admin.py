"""Admin pages for environments (pool, freeze windows) and deploy runs (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from controlplane import audit
from controlplane.admin import ReadOnlyAdmin
from deploys.models import (
    DeployAttempt,
    DeployEvent,
    DeployRun,
    Environment,
    EnvironmentRunner,
    FreezeWindow,
    WebhookDelivery,
    WebhookHook,
    WebhookRedelivery,
)

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
    _Inline = admin.TabularInline[Any, Any]
else:  # generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin
    _Inline = admin.TabularInline


class PoolInline(_Inline):
    model = EnvironmentRunner
    extra = 1
    ordering = ["position"]


class FreezeWindowInline(_Inline):
    model = FreezeWindow
    extra = 0


@admin.register(Environment)
class EnvironmentAdmin(_ModelAdmin):
    list_display = [
        "name",
        "repository",
        "workflow_file",
        "policy",
        "heartbeat_policy",
        "exporter_policy",
        "paused",
    ]
    list_filter = ["heartbeat_policy", "exporter_policy"]
    search_fields = ["name", "repository"]
    inlines = [PoolInline, FreezeWindowInline]

    def save_formset(
        self, request: HttpRequest, form: Any, formset: Any, change: bool
    ) -> None:
        """Freeze windows changed here are audited as through the API."""
        if formset.model is not FreezeWindow:
            super().save_formset(request, form, formset, change)
            return
        # Recorded before the delete, while the windows still have their ids.
        for deleted in formset.deleted_forms:
            if deleted.instance.pk is not None:
                window = deleted.instance
                audit.record(
                    request.user,
                    "freeze_window.delete",
                    window,
                    **window.audit_detail(),
                )
        super().save_formset(request, form, formset, change)
        for window in formset.new_objects:
            audit.record(
                request.user, "freeze_window.create", window, **window.audit_detail()
            )
        for window, fields in formset.changed_objects:
            audit.record(
                request.user,
                "freeze_window.update",
                window,
                fields=sorted(fields),
                **window.audit_detail(),
            )


class AttemptInline(_Inline):
    model = DeployAttempt
    extra = 0
    can_delete = False
    readonly_fields = [f.name for f in DeployAttempt._meta.fields]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class EventInline(_Inline):
    model = DeployEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "message", "detail"]
    readonly_fields = ["created_at", "kind", "message", "detail"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(DeployRun)
class DeployRunAdmin(_ModelAdmin):
    """Deploys are read here; they change only through the engine and the API."""

    list_display = ["pk", "environment", "ref", "state", "reason", "created_at"]
    list_filter = ["state", "environment"]
    search_fields = ["ref", "requester_name", "change_ticket"]
    inlines = [AttemptInline, EventInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: DeployRun | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: DeployRun | None = None
    ) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Every signed delivery GitHub made, with what became of it."""

    list_display = [
        "received_at",
        "event",
        "action",
        "outcome",
        "repository",
        "github_run_id",
        "deploy_run",
        "reason",
        "error",
    ]
    list_filter = ["outcome", "event", "received_at"]
    search_fields = ["delivery_id", "repository", "github_run_id"]
    date_hierarchy = "received_at"
    list_select_related = ["deploy_run"]


@admin.register(WebhookRedelivery)
class WebhookRedeliveryAdmin(ReadOnlyAdmin):
    """Redeliveries the recovery task asked GitHub for."""

    list_display = [
        "guid",
        "event",
        "attempts",
        "first_requested_at",
        "last_requested_at",
        "error",
    ]
    search_fields = ["guid"]


@admin.register(WebhookHook)
class WebhookHookAdmin(ReadOnlyAdmin):
    """The hook whose delivery log recovery reads (forgotten when GitHub says it is
    gone, then found again by its URL)."""

    list_display = ["scope", "owner", "hook_id", "checked_until", "updated_at"]
