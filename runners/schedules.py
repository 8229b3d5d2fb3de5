"""The runner fleet's periodic tasks (``controlplane.schedules``), all on the
``health`` queue."""

from __future__ import annotations

from controlplane.schedules import Schedule, Setting

SCHEDULES = (
    Schedule(
        name="Runner health sweep",
        task="runners.tasks.sweep_health",
        every=Setting("HEALTH_SWEEP_INTERVAL"),
        queue="health",
        # A sweep queued behind a backlog is dropped: the next one evaluates the same
        # signals, and two back to back would count one observation twice.
        expire_seconds=Setting("HEALTH_SWEEP_INTERVAL"),
        description=(
            "Evaluates every runner's health from its heartbeat, GitHub status "
            "and exporter readings; a dead host turns unhealthy within "
            "HEARTBEAT_STALE_AFTER + HEALTH_FALL_AFTER sweeps."
        ),
    ),
    Schedule(
        name="Deploying runners' health check",
        task="runners.tasks.check_deploying_runners",
        every=Setting("HEALTH_DEPLOY_CHECK_INTERVAL"),
        queue="health",
        expire_seconds=Setting("HEALTH_DEPLOY_CHECK_INTERVAL"),
        description=(
            "Marks the runners holding an active deploy (their agents are told to "
            "heartbeat every HEARTBEAT_DEPLOY_INTERVAL) and evaluates their health "
            "only; a deploying runner's dead host turns unhealthy within "
            "HEARTBEAT_DEPLOY_STALE_AFTER + HEALTH_FALL_AFTER checks."
        ),
    ),
    Schedule(
        name="Runner history retention",
        task="runners.tasks.prune_health_history",
        every=1,
        period="hours",
        queue="health",
        expire_seconds=1800,
        description=(
            "Deletes runner health samples and events older than "
            "HEALTH_RETENTION_DAYS, in bounded batches."
        ),
    ),
    Schedule(
        name="Runner registry sync",
        task="runners.tasks.sync_runners",
        every=Setting("RUNNER_SYNC_MIN_INTERVAL"),
        queue="health",
        expire_seconds=Setting("RUNNER_SYNC_MIN_INTERVAL"),
        description=(
            "Keeps the runner registry in step with GitHub's runner list. Runs "
            "often but sweeps only when the interval adapted to the fleet size "
            "has passed, so steady-state use stays within GITHUB_BUDGET_SHARE of "
            "the hourly API limit."
        ),
    ),
    Schedule(
        name="Runner exporter probe",
        task="runners.tasks.probe_exporters",
        every=Setting("EXPORTER_PROBE_INTERVAL"),
        queue="health",
        expire_seconds=Setting("EXPORTER_PROBE_INTERVAL"),
        description=(
            "Reads every active runner's Prometheus exporter and judges disk free "
            "and load per CPU against DISK_FREE_MIN_PERCENT and LOAD_PER_CPU_MAX."
        ),
    ),
    Schedule(
        name="Runner version check",
        task="runners.tasks.check_runner_versions",
        every=15,
        period="minutes",
        queue="health",
        expire_seconds=600,
        description=(
            "Flags runners below RUNNER_VERSION_MINIMUM or more than "
            "RUNNER_VERSION_MAX_MINOR_BEHIND minor versions behind the newest "
            "release, read from GitHub's runner downloads endpoint every "
            "RUNNER_VERSION_FETCH_HOURS (a few requests a day)."
        ),
    ),
)
