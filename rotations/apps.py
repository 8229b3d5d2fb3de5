from __future__ import annotations

from django.apps import AppConfig


class RotationsConfig(AppConfig):
    name = "rotations"
    verbose_name = "Secret rotation"

    def ready(self) -> None:
        # Registers the secret rotation collector with /metrics.
        import rotations.metrics  # noqa: F401
