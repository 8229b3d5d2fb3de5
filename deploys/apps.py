from __future__ import annotations

from django.apps import AppConfig

from controlplane.schedules import register as register_schedules
from deploys.schedules import SCHEDULES


class DeploysConfig(AppConfig):
    name = "deploys"
    verbose_name = "Deploys"

    def ready(self) -> None:
        # What deploys add to the floor: their /metrics collectors (deploys,
        # notifications, secret rotation; registered on import), their notification
        # scanner, their navigation sections and their periodic tasks. Imported
        # here: models load only once the app registry is ready.
        import deploys.metrics  # noqa: F401
        from controlplane import context_processors, notifications
        from controlplane.roles import Role
        from deploys import notify
        from deploys.engine.failover import wake_on_fallen_runners
        from runners import health

        notifications.register_scanner(notify.SCANNER)
        section = context_processors.register_section
        section("Deploys", "deploys:run-list", position=20)
        section("Deployed now", "deploys:deployed-now", position=22)
        section("Webhooks", "deploys:webhook-list", position=40, role=Role.SRE)
        register_schedules(*SCHEDULES)
        # A runner that falls wakes the deploys running on it (see the function).
        health.on_transitions(wake_on_fallen_runners)
