from __future__ import annotations

from django.apps import AppConfig

from controlplane.schedules import register as register_schedules
from diagnostics.schedules import SCHEDULES


class DiagnosticsConfig(AppConfig):
    name = "diagnostics"
    verbose_name = "Runner diagnostics without SSH"

    def ready(self) -> None:
        # Imported here: the metrics registry and the collectors load models, which
        # needs the app registry ready.
        from controlplane import metrics
        from diagnostics.canary_metrics import CanaryCollector
        from diagnostics.metrics import DiagnosticsCollector

        register_schedules(*SCHEDULES)
        metrics.register(DiagnosticsCollector())
        metrics.register(CanaryCollector())
