"""Admin pages for the runner registry: read-mostly, health is the sweep's to write."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Model, URLField
from django.http import HttpRequest

from controlplane.admin import AuditedAdmin
from runners.models import HealthSample, Runner, RunnerEvent

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:  # ModelAdmin is generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin


class HistoryAdmin(_ModelAdmin):
    """Rows the application writes: visible, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False


@admin.register(Runner)
class RunnerAdmin(AuditedAdmin):
    """Runners: an admin edits what the sync cannot know (host, exporter URL);
    audited as ``runner.update`` and ``runner.delete``."""

    list_display = [
        "name",
        "state",
        "reason",
        "drained",
        "github_status",
        "last_heartbeat_at",
        "removed_at",
    ]
    list_filter = ["state", "reason", "drained", "github_status"]
    search_fields = ["name", "host"]
    formfield_overrides = {URLField: {"assume_scheme": "https"}}
    readonly_fields = [
        "github_id",
        "github_status",
        "github_busy",
        "github_seen_at",
        "removed_at",
        "last_heartbeat_at",
        "heartbeat_deadline",
        "heartbeat_token_digest",
        "facts",
        "facts_problems",
        "exporter_ok",
        "exporter_problems",
        "exporter_checked_at",
        "exporter_detail",
        "state",
        "reason",
        "state_since",
        "observed_flags",
        "bad_streak",
        "good_streak",
        "drained",
        "drained_reason",
        "drained_by",
        "drained_at",
        "first_seen_at",
        "created",
        "updated",
    ]


@admin.register(RunnerEvent)
class RunnerEventAdmin(HistoryAdmin):
    list_display = ["created_at", "runner", "kind", "from_state", "to_state", "actor"]
    list_filter = ["kind", "to_state"]
    list_select_related = ["runner"]
    raw_id_fields = ["runner"]


@admin.register(HealthSample)
class HealthSampleAdmin(HistoryAdmin):
    list_display = ["observed_at", "runner", "source", "ok", "latency_ms"]
    list_filter = ["source", "ok"]
    list_select_related = ["runner"]
    raw_id_fields = ["runner"]
