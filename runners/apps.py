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
        import runners.metrics  # noqa: F401
        from controlplane import context_processors, notifications
        from runners import notify

        notifications.register_scanner(notify.SCANNER)
        context_processors.register_section("Fleet", "runners:fleet", position=10)
        register_schedules(*SCHEDULES)
