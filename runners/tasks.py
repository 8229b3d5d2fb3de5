"""Periodic runner jobs, run by Celery beat on the ``health`` queue."""

from __future__ import annotations

from celery import shared_task

from controlplane.tasks import tracked
from runners import deploying, health, probe, sync, versions


@shared_task(ignore_result=True)
def sweep_health() -> None:
    """Evaluate the whole fleet's health (every HEALTH_SWEEP_INTERVAL seconds)."""
    with tracked("health_sweep"):
        health.sweep()


@shared_task(ignore_result=True)
def check_deploying_runners() -> None:
    """Evaluate the health of the runners holding a deploy (every
    HEALTH_DEPLOY_CHECK_INTERVAL seconds)."""
    with tracked("deploying_check"):
        deploying.check()


@shared_task(ignore_result=True)
def prune_health_history() -> None:
    """Delete health samples and events past HEALTH_RETENTION_DAYS (hourly)."""
    with tracked("health_retention"):
        health.prune_history()


@shared_task(ignore_result=True)
def sync_runners() -> None:
    """Sync the runner registry from GitHub when the adaptive interval has passed
    (beat sends this every RUNNER_SYNC_MIN_INTERVAL seconds; most runs skip)."""
    if sync.is_due():
        with tracked("runner_sync"):
            sync.sync_if_due()


@shared_task(ignore_result=True)
def probe_exporters() -> None:
    """Read every active runner's exporter (every EXPORTER_PROBE_INTERVAL seconds)."""
    with tracked("exporter_probe"):
        probe.probe_fleet()


@shared_task(ignore_result=True)
def check_runner_versions() -> None:
    """Read the newest runner release when due (every RUNNER_VERSION_FETCH_HOURS)
    and flag outdated runners (every 15 minutes)."""
    with tracked("runner_versions"):
        versions.run()
