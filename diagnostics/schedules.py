"""Diagnostics' periodic task (``controlplane.schedules``), on the ``health`` queue."""

from __future__ import annotations

from controlplane.schedules import Schedule

SCHEDULES = (
    Schedule(
        name="Runner diagnostics watch",
        task="diagnostics.tasks.watch_host_runs",
        every=5,
        queue="health",
        expire_seconds=5,
        description=(
            "Follows dispatched diagnostics and agent-install runs: finishes them "
            "when GitHub says they ended, times them out (and cancels them) after "
            "DIAGNOSTICS_DEADLINE seconds. Follows canaries from their job webhooks."
        ),
    ),
    Schedule(
        name="Runner canary schedule",
        task="diagnostics.tasks.schedule_canaries",
        every=60,
        queue="health",
        expire_seconds=60,
        description=(
            "Requests a canary job on each pool runner every environment's "
            "canary_interval_minutes (never on a busy runner or while the "
            "environment deploys), stretched to fit CANARY_BUDGET_SHARE."
        ),
    ),
)
