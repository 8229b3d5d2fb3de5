from __future__ import annotations

from django.apps import AppConfig

from controlplane.schedules import register as register_schedules
from rotations.schedules import SCHEDULES


class RotationsConfig(AppConfig):
    name = "rotations"
    verbose_name = "Secret rotation"

    def ready(self) -> None:
        # What secret rotation adds to the floor: its /metrics collector
        # (registered on import), its navigation section and its periodic task.
        # Imported here: models load only once the app registry is ready.
        from django.urls import reverse

        import rotations.metrics  # noqa: F401
        from controlplane import audit, board, context_processors
        from rotations.board import secrets_panel

        context_processors.register_section(
            "Secrets", "rotations:secret-list", position=30
        )
        register_schedules(*SCHEDULES)
        board.register_panel(
            "secrets", "rotations/_board.html", secrets_panel, position=30
        )
        audit.register_target_url(
            "rotations.secretrotationschedule",
            lambda pk, _: reverse("rotations:secret-detail", args=[int(pk)]),
        )
