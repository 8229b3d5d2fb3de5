"""Admin pages for secret rotation schedules (audited) and their history (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest

from controlplane.admin import AuditedAdmin
from rotations.models import SecretRotation, SecretRotationSchedule

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
    _Inline = admin.TabularInline[Any, Any]
else:  # generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin
    _Inline = admin.TabularInline


class RotationInline(_Inline):
    model = SecretRotation
    extra = 0
    can_delete = False
    fields = ["rotated_at", "source", "actor_name", "key_id"]
    readonly_fields = ["rotated_at", "source", "actor_name", "key_id"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(SecretRotationSchedule)
class SecretRotationScheduleAdmin(AuditedAdmin):
    """Rotation schedules (audited as ``secret_schedule.*``); rotation itself
    happens on the secrets page."""

    audit_object = "secret_schedule"
    list_display = ["name", "scope", "environment", "interval_days", "next_due"]
    list_filter = ["scope", "environment"]
    search_fields = ["name", "owner"]
    fields = [
        "name",
        "scope",
        "repository",
        "environment",
        "interval_days",
        "warning_days",
        "owner",
        "required_by",
        "notes",
    ]
    filter_horizontal = ["required_by"]
    inlines = [RotationInline]
