from __future__ import annotations

from django.apps import AppConfig

from controlplane.schedules import register as register_schedules
from runners.schedules import SCHEDULES


class RunnersConfig(AppConfig):
    name = "runners"
    verbose_name = "Runner fleet"

    def ready(self) -> None:
        # Registers the fleet collector with /metrics.
        from runners import metrics  # noqa: F401

        register_schedules(*SCHEDULES)
