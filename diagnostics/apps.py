from __future__ import annotations

from django.apps import AppConfig

from controlplane.schedules import register as register_schedules
from diagnostics.schedules import SCHEDULES


class DiagnosticsConfig(AppConfig):
    name = "diagnostics"
    verbose_name = "Runner diagnostics without SSH"

    def ready(self) -> None:
        from controlplane.metrics import register as register_metrics
        from diagnostics.canary_metrics import CanaryCollector

        register_schedules(*SCHEDULES)
        register_metrics(CanaryCollector())
