from __future__ import annotations

from django.apps import AppConfig


class DeploysConfig(AppConfig):
    name = "deploys"
    verbose_name = "Deploys"

    def ready(self) -> None:
        # Registers the deploy and notification collectors with /metrics.
        import deploys.metrics  # noqa: F401
