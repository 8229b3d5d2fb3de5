from __future__ import annotations

from django.apps import AppConfig

from controlplane.schedules import register as register_schedules
from deploys.schedules import SCHEDULES


class DeploysConfig(AppConfig):
    name = "deploys"
    verbose_name = "Deploys and secrets"

    def ready(self) -> None:
        # Registers the deploy and notification collectors with /metrics.
        import deploys.metrics  # noqa: F401

        # Registers the secret rotation collector with /metrics.
        from deploys import secrets_metrics  # noqa: F401

        register_schedules(*SCHEDULES)
