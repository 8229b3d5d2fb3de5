"""Diagnostics tasks: dispatch one run, and the periodic watch of runs in flight."""

from __future__ import annotations

from celery import shared_task

from controlplane.tasks import tracked
from diagnostics import domain


@shared_task(ignore_result=True, acks_late=True)
def dispatch_host_run(run_id: int) -> None:
    """Dispatch the workflow of a requested run (enqueued after its row commits)."""
    domain.dispatch(run_id)


@shared_task(ignore_result=True)
def watch_host_runs() -> None:
    """Look at the runs in flight whose next look is due (every 5 seconds)."""
    with tracked("diagnostics_watch"):
        domain.watch_due()
