from __future__ import annotations

from django.apps import AppConfig


class DeploysConfig(AppConfig):
    name = "deploys"
    verbose_name = "Deploys and secrets"

    def ready(self) -> None:
        # Registers the deploy and notification collectors with /metrics.
        import deploys.metrics  # noqa: F401

        # Models are importable only once the registry is ready, hence here.
        from controlplane import notifications

        # Registers the secret rotation collector with /metrics.
        from deploys import (
            notify,
            secrets_metrics,  # noqa: F401
        )

        notifications.register_scanner(notify.SCANNER)
