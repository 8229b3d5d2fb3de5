from __future__ import annotations

from django.apps import AppConfig

from controlplane.schedules import register as register_schedules
from runners.schedules import SCHEDULES


class RunnersConfig(AppConfig):
    name = "runners"
    verbose_name = "Runner fleet"

    def ready(self) -> None:
        # What the fleet adds to the floor: its /metrics collector (registered on
        # import), its notification scanner, its navigation section and its
        # periodic tasks. Imported here: models load only once the app registry is
        # ready.
        from django.urls import reverse

        import runners.hygiene_metrics  # noqa: F401
        import runners.metrics  # noqa: F401
        import runners.retention_metrics  # noqa: F401
        from controlplane import audit, board, context_processors, notifications
        from runners import notify
        from runners.board import fleet_panel

        notifications.register_scanner(notify.SCANNER)
        context_processors.register_section("Fleet", "runners:fleet", position=10)
        context_processors.register_section(
            "Stale runners", "retention:stale", position=12
        )
        register_schedules(*SCHEDULES)
        board.register_panel(
            "fleet", "runners/_board_fleet.html", fleet_panel, position=10
        )
        audit.register_target_url(
            "runners.runner", lambda _, name: reverse("runners:detail", args=[name])
        )
