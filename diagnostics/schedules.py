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
            "DIAGNOSTICS_DEADLINE seconds."
        ),
    ),
)
