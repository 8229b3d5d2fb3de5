from __future__ import annotations

from django.apps import AppConfig

from controlplane.schedules import register as register_schedules
from deploys.schedules import SCHEDULES


def runners_holding_deploys() -> list[int]:
    """The runners of the active (not final) deploy attempts."""
    from deploys.models import DeployAttempt

    return list(
        DeployAttempt.objects.exclude(state__in=DeployAttempt.FINAL_STATES)
        .order_by()
        .values_list("runner_id", flat=True)
        .distinct()
    )


class DeploysConfig(AppConfig):
    name = "deploys"
    verbose_name = "Deploys"

    def ready(self) -> None:
        # What deploys add to the floor: their /metrics collectors (deploys,
        # notifications, secret rotation, registered on import; the change-ticket
        # outbox's), their notification scanner, their navigation sections and
        # their periodic tasks. Imported here: models load only once the app
        # registry is ready.
        from django.urls import reverse

        import deploys.metrics  # noqa: F401
        from controlplane import (
            audit,
            board,
            context_processors,
            metrics,
            notifications,
        )
        from controlplane.roles import Role
        from deploys import notify, ticket_outbox
        from deploys.board import deploys_panel
        from deploys.engine.failover import wake_on_fallen_runners
        from runners import deploying, health

        notifications.register_scanner(notify.SCANNER)
        metrics.register(ticket_outbox.TicketUpdateCollector())
        section = context_processors.register_section
        section("Deploys", "deploys:run-list", position=20)
        section("Deployed now", "deploys:deployed-now", position=22)
        section("Environments", "deploys:environment-list", position=25)
        section("Webhooks", "deploys:webhook-list", position=40, role=Role.SRE)
        register_schedules(*SCHEDULES)
        board.register_panel(
            "deploys", "deploys/_board.html", deploys_panel, position=20
        )
        audit.register_target_url(
            "deploys.environment",
            lambda _, name: reverse("deploys:environment-detail", args=[name]),
        )
        audit.register_target_url(
            "deploys.deployrun",
            lambda pk, _: reverse("deploys:run-detail", args=[int(pk)]),
        )
        # A runner that falls wakes the deploys running on it (see the function).
        health.on_transitions(wake_on_fallen_runners)
        # A runner holding an active attempt heartbeats faster and is checked
        # every second (runners.deploying).
        deploying.register_holders(runners_holding_deploys)
