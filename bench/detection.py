"""Dead-host detection end to end: seconds from a host's last heartbeat to unhealthy.

    python -m bench.detection
    python -m bench.detection --contention 2
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_detection \\
        python -m bench.detection

Starts, as separate processes at default settings, the GitHub simulator (demo
fleet, heartbeating to the control plane), gunicorn, a Celery worker and Celery
beat on a fresh database and broker, wires them with ``manage.py demo`` and waits
for the fleet to turn healthy. Then the simulator kills several runner hosts at
once; for each, the time from its last recorded heartbeat to the health sweep's
``unhealthy`` transition is measured. ``detection_seconds`` is the slowest.
``--contention N`` keeps N busy-loop processes running beside the stack throughout.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from bench import emit
from bench._processes import Stack, busy_processes, prepare, setup_django, wait_until

__all__ = ["Stack", "main", "measure"]

VICTIMS = ("prod-primary-1", "staging-1", "build-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--contention",
        type=int,
        default=0,
        metavar="N",
        help="busy-loop processes to run beside the stack (default: none)",
    )
    args = parser.parse_args()
    if args.contention < 0:
        parser.error("--contention must be 0 or more")

    var_dir, database_url, env = prepare("detection")
    with (
        busy_processes(args.contention),
        Stack(env, var_dir / "processes.log") as stack,
    ):
        result = measure(database_url, stack, args.timeout)
    result["contention_processes"] = args.contention
    print(f"process logs: {var_dir / 'processes.log'}", flush=True)
    emit(result)


def measure(database_url: str, stack: Stack, timeout: float) -> dict[str, Any]:
    setup_django(database_url)
    from django.conf import settings
    from django.db import close_old_connections

    from controlplane.models import TaskStatus
    from runners.models import Runner, RunnerEvent, State

    def healthy() -> bool:
        close_old_connections()
        return Runner.objects.filter(name__in=VICTIMS, state=State.HEALTHY).count() == 3

    wait_until(healthy, timeout, "the demo runners to turn healthy")
    killed_at = time.time()
    # Only this run's transitions count: a reused DATABASE_URL holds earlier ones.
    since = datetime.fromtimestamp(killed_at, tz=UTC)
    for name in VICTIMS:
        stack.kill_host(name)

    def detected() -> bool:
        close_old_connections()
        return (
            RunnerEvent.objects.filter(
                runner__name__in=VICTIMS,
                kind=RunnerEvent.Kind.STATE_CHANGE,
                to_state=State.UNHEALTHY,
                created_at__gte=since,
            ).count()
            == 3
        )

    wait_until(detected, timeout, "the killed runners to turn unhealthy")
    samples = []
    for name in VICTIMS:
        runner = Runner.objects.get(name=name)
        event = runner.events.get(
            kind=RunnerEvent.Kind.STATE_CHANGE,
            to_state=State.UNHEALTHY,
            created_at__gte=since,
        )
        assert runner.last_heartbeat_at is not None
        since_heartbeat = (event.created_at - runner.last_heartbeat_at).total_seconds()
        since_kill = event.created_at.timestamp() - killed_at
        samples.append((name, since_heartbeat, since_kill, event.reason))
        print(
            f"{name}: unhealthy ({event.reason}) {since_heartbeat:.1f} s after its "
            f"last heartbeat, {since_kill:.1f} s after the kill",
            flush=True,
        )
    bound = (
        settings.HEARTBEAT_STALE_AFTER
        + settings.HEALTH_FALL_AFTER * settings.HEALTH_SWEEP_INTERVAL
    )
    return {
        "detection_seconds": round(max(s[1] for s in samples), 2),
        "detection_seconds_each": [round(s[1], 2) for s in samples],
        "seconds_after_kill": [round(s[2], 2) for s in samples],
        "reasons": [s[3] for s in samples],
        "design_bound_seconds": bound,
        "database": database_url.split(":", 1)[0],
        # Periodic jobs the real worker ran successfully meanwhile.
        "tasks_succeeded": sorted(
            TaskStatus.objects.filter(last_success_at__isnull=False).values_list(
                "name", flat=True
            )
        ),
    }


if __name__ == "__main__":
    main()
