"""How long each watched periodic job may go without succeeding, and which have.

The one place these bounds live: the banner on every UI page and ``/readyz`` read
them. Each bound is several of the job's own intervals, so one late run under load
does not raise it, while a stopped beat, worker or sweep shows within a minute.
The Prometheus rules (``monitoring/prometheus/alerts.yml``) page later, at 2-3
minutes: an alert wakes someone, the banner only informs whoever is looking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from controlplane.models import TaskStatus
from controlplane.tasks import BEAT_TASK_STATUS

# Beat sends the tick every 15 s and the reconciler runs every 2 s (their schedule
# migrations); the sweep every HEALTH_SWEEP_INTERVAL; the diagnostics watch every
# 5 s, the canary schedule and the inventory file watch every 60 s
# (diagnostics/schedules.py, inventory/schedules.py). A job that never ran counts
# as stale like one that stopped, except those every 60 s: their first run comes a
# minute after beat first starts, and a new install would open on a red banner;
# once they have run, they are named when they stop (beat itself not running is
# the beat tick's banner).
BEAT_TICK_SECONDS = 15
RECONCILE_SECONDS = 2
DIAGNOSTICS_WATCH_SECONDS = 5
CANARY_SCHEDULE_SECONDS = 60
INVENTORY_FILE_SECONDS = 60


@dataclass(frozen=True)
class WatchedJob:
    name: str  # its TaskStatus name
    label: str
    bound_seconds: float
    runbook: str
    consequence: str
    # Whether a job that has never succeeded is named (see above).
    stale_if_never_ran: bool = True


def watched_jobs() -> list[WatchedJob]:
    return [
        WatchedJob(
            BEAT_TASK_STATUS,
            "Celery beat tick",
            4 * BEAT_TICK_SECONDS,
            "celery-beat-stale",
            # The worker records the tick beat sends: either may be down.
            "beat or every worker is down: no health checks, deploys stall",
        ),
        WatchedJob(
            "health_sweep",
            "health sweep",
            max(30, 6 * settings.HEALTH_SWEEP_INTERVAL),
            "control-plane-tasks-stale",
            "runner health is frozen: dead hosts still look healthy",
        ),
        WatchedJob(
            "deploy_reconcile",
            "deploy reconciler",
            15 * RECONCILE_SECONDS,
            "control-plane-tasks-stale",
            "deploys whose messages were lost stop advancing",
        ),
        WatchedJob(
            "diagnostics_watch",
            "diagnostics watch",
            12 * DIAGNOSTICS_WATCH_SECONDS,
            "control-plane-tasks-stale",
            "diagnostics and agent installs in flight are never finished or timed out",
        ),
        WatchedJob(
            "canary_schedule",
            "canary schedule",
            # Three of its intervals, as ControlPlaneTaskStale allows it.
            3 * CANARY_SCHEDULE_SECONDS,
            "control-plane-tasks-stale",
            "no canary job is sent: a runner that stopped taking jobs is found out "
            "only when a deploy waits on it",
            stale_if_never_ran=False,
        ),
        WatchedJob(
            "inventory_file",
            "inventory file watch",
            3 * INVENTORY_FILE_SECONDS,
            "control-plane-tasks-stale",
            "a changed INVENTORY_PATH file is not loaded: drift is judged against "
            "the inventory loaded before",
            stale_if_never_ran=False,
        ),
    ]


@dataclass(frozen=True)
class StaleJob:
    job: WatchedJob
    last_success_at: datetime | None
    # None when it has never succeeded.
    seconds_since: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job.name,
            "bound_seconds": self.job.bound_seconds,
            "seconds_since_success": (
                None if self.seconds_since is None else round(self.seconds_since)
            ),
        }


def stale_jobs(now: datetime) -> list[StaleJob]:
    """The watched jobs that have not succeeded within their bound (or ever), in
    one query."""
    jobs = watched_jobs()
    last = dict(
        TaskStatus.objects.filter(name__in=[j.name for j in jobs]).values_list(
            "name", "last_success_at"
        )
    )
    return _stale(jobs, last, now)


def stale_among(tasks: Iterable[TaskStatus], now: datetime) -> list[StaleJob]:
    """``stale_jobs`` judged from task rows already loaded (no query)."""
    return _stale(
        watched_jobs(), {task.name: task.last_success_at for task in tasks}, now
    )


def _stale(
    jobs: list[WatchedJob], last: dict[str, datetime | None], now: datetime
) -> list[StaleJob]:
    stale = []
    for job in jobs:
        success = last.get(job.name)
        since = None if success is None else (now - success).total_seconds()
        if (since is None and job.stale_if_never_ran) or (
            since is not None and since > job.bound_seconds
        ):
            stale.append(StaleJob(job, success, since))
    return stale
