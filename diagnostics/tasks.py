"""Diagnostics tasks: dispatch one run, cancel the GitHub run of a canary that gave
way, the periodic watch of runs in flight (canaries included) and the canary
schedule."""

from __future__ import annotations

from celery import shared_task

from controlplane.tasks import tracked
from diagnostics import canary, domain, preempt


@shared_task(ignore_result=True, acks_late=True)
def dispatch_host_run(run_id: int) -> None:
    """Dispatch the workflow of a requested run (enqueued after its row commits)."""
    domain.dispatch(run_id)


@shared_task(ignore_result=True, acks_late=True)
def cancel_host_run(run_id: int) -> None:
    """Cancel the GitHub run of a canary that gave way to an SRE's request."""
    preempt.cancel_on_github(run_id)


@shared_task(ignore_result=True)
def watch_host_runs() -> None:
    """Look at the runs in flight whose next look is due (every 5 seconds)."""
    with tracked("diagnostics_watch"):
        domain.watch_due()
        canary.watch_due()


@shared_task(ignore_result=True)
def schedule_canaries() -> None:
    """Record the canaries whose turn has come on the pool runners (every minute)."""
    with tracked("canary_schedule"):
        canary.schedule_due()
