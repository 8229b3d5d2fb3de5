from __future__ import annotations

from django.apps import AppConfig


class RunnersConfig(AppConfig):
    name = "runners"
    verbose_name = "Runner fleet"

    def ready(self) -> None:
        # Registers the fleet collector with /metrics.
        # Models are importable only once the registry is ready, hence here.
        from controlplane import notifications
        from runners import (
            metrics,  # noqa: F401
            notify,
        )

        notifications.register_scanner(notify.SCANNER)
