"""Periodic runner jobs, run by Celery beat on the ``health`` queue."""

from __future__ import annotations

from celery import shared_task

from controlplane.tasks import tracked
from runners import health


@shared_task(ignore_result=True)
def sweep_health() -> None:
    """Evaluate the whole fleet's health (every HEALTH_SWEEP_INTERVAL seconds)."""
    with tracked("health_sweep"):
        health.sweep()


@shared_task(ignore_result=True)
def prune_health_history() -> None:
    """Delete health samples and events past HEALTH_RETENTION_DAYS (hourly)."""
    with tracked("health_retention"):
        health.prune_history()
