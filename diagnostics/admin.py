from __future__ import annotations

from django.contrib import admin

from diagnostics.models import HostRun
from runners.admin import HistoryAdmin


@admin.register(HostRun)
class HostRunAdmin(HistoryAdmin):
    """Diagnostics and agent-install runs: written by the application only."""

    list_display = ["runner", "kind", "state", "requested_by", "requested_at"]
    list_filter = ["kind", "state"]
    search_fields = ["runner__name", "token"]
