"""Admin pages for environments (pool, freeze windows) and deploy runs (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from controlplane import audit
from controlplane.admin import AuditedAdmin, ReadOnlyAdmin
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
from runners import name_labels

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
    _Inline = admin.TabularInline[Any, Any]
    _ModelForm = forms.ModelForm[Environment]
else:  # generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin
    _Inline = admin.TabularInline
    _ModelForm = forms.ModelForm


class PoolInline(_Inline):
    model = EnvironmentRunner
    extra = 1
    ordering = ["position"]


def _warn_name_labels(request: HttpRequest, env: Environment) -> None:
    """Flag the pool's runners that lack their name label, and say so."""
    name_labels.flag()
    missing = name_labels.flagged_names(entry.runner_id for entry in env.pool())
    if missing:
        messages.warning(
            request,
            f"{', '.join(missing)} in the pool of {env.name} do not carry their own "
            "name as a label: the deploy workflow cannot target them, so deploys "
            "pass them over until the label is added in GitHub.",
        )


class FreezeWindowInline(_Inline):
    model = FreezeWindow
    extra = 0


class SecretNamesField(forms.CharField):
    """A list of secret names edited as text, one per line (blank lines ignored)."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 40})

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, list):
            return "\n".join(str(name) for name in value)
        return str(value or "")

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


# Environment fields counted in seconds, labelled so in the form.
SECONDS_FIELDS = ("pickup_timeout", "gate_timeout", "busy_wait")


class EnvironmentForm(_ModelForm):
    required_secrets = SecretNamesField(
        required=False,
        help_text="One secret name per line. Each must exist in the repository or "
        "the GitHub environment before a deploy is dispatched.",
    )

    class Meta:
        model = Environment
        fields = "__all__"  # noqa: DJ007 - the admin's own form: every field shown
        help_texts = {
            "pickup_timeout": "Seconds a dispatched job may wait for its runner "
            "before the next runner of the pool is tried.",
            "gate_timeout": "Seconds a deploy may wait for a healthy runner (or its "
            "secrets) before it fails.",
            "busy_wait": "Seconds the gate waits for its preferred runner while that "
            "runner is busy with another job, before it takes the next idle healthy "
            "runner (0: never wait).",
            "max_attempts": "Dispatches per deploy, failovers included.",
            "paused_reason": "Shown wherever deploys to this environment are refused.",
            "production": "The deploy form asks for a confirmation naming the "
            "environment, the ref and the runner.",
        }


@admin.register(Environment)
class EnvironmentAdmin(AuditedAdmin):
    """Environments, their pools and freeze windows: every change audited as
    through the API (``environment.*``, ``environment.pool_update``,
    ``freeze_window.*``)."""

    form = EnvironmentForm
    list_display = [
        "name",
        "repository",
        "workflow_file",
        "policy",
        "heartbeat_policy",
        "exporter_policy",
        "canary_policy",
        "paused",
    ]
    list_filter = ["heartbeat_policy", "exporter_policy", "canary_policy"]
    search_fields = ["name", "repository"]
    readonly_fields = ["created_at", "updated_at", "paused_by", "paused_at"]
    inlines = [PoolInline, FreezeWindowInline]

    def formfield_for_dbfield(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        # Timeouts are seconds: say so beside the box.
        if db_field.name in SECONDS_FIELDS and field is not None:
            field.widget.attrs.update({"min": 1, "step": 1, "class": "seconds"})
            field.label = f"{field.label} (seconds)"
        return field

    def save_formset(
        self, request: HttpRequest, form: Any, formset: Any, change: bool
    ) -> None:
        """Pools and freeze windows changed here are audited as through the API."""
        if formset.model is EnvironmentRunner:
            changed = formset.has_changed()
            super().save_formset(request, form, formset, change)
            if changed:
                env = form.instance
                _warn_name_labels(request, env)
                audit.record(
                    request.user,
                    "environment.pool_update",
                    env,
                    via="admin",
                    pool=[entry.runner.name for entry in env.pool()],
                )
            return
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
                    via="admin",
                    **window.audit_detail(),
                )
        super().save_formset(request, form, formset, change)
        for window in formset.new_objects:
            audit.record(
                request.user,
                "freeze_window.create",
                window,
                via="admin",
                **window.audit_detail(),
            )
        for window, fields in formset.changed_objects:
            audit.record(
                request.user,
                "freeze_window.update",
                window,
                via="admin",
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
