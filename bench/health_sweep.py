"""Health sweep over a large fleet: time and statements, compared with 100 runners.

    python -m bench.health_sweep --runners 10000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_health \\
        python -m bench.health_sweep --runners 10000

Builds a fleet (most runners heartbeating with GitHub online, some silent, some
GitHub-offline, some short of disk, some never seen), then runs the sweeps a real
fleet sees: the first observation of everything, the sweep that turns the troubled
runners down, a steady-state sweep, and one after 1 % of the fleet stopped
heartbeating. Reports the slowest sweep's time and the statements per sweep, which
must be the same for 100 runners.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from typing import Any

from bench import database_url, emit, setup_django


def build_fleet(size: int, now: datetime) -> None:
    from runners.models import Flag, HealthSample, Runner, RunnerEvent, State

    RunnerEvent.objects.all().delete()
    HealthSample.objects.all().delete()
    Runner.objects.all().delete()
    fresh = {
        "last_heartbeat_at": now,
        "heartbeat_deadline": now + timedelta(seconds=20),
    }
    github_fresh = {"github_seen_at": now - timedelta(seconds=60)}
    runners = []
    for i in range(size):
        kind = i % 20
        kw: dict[str, Any] = {"name": f"bench-{i:06d}", "state": State.HEALTHY}
        if kind < 14:  # 70 % fine
            kw.update(fresh, **github_fresh, github_status="online")
        elif kind < 16:  # 10 % stopped heartbeating a minute ago
            kw.update(
                last_heartbeat_at=now - timedelta(seconds=60),
                heartbeat_deadline=now - timedelta(seconds=40),
                github_status="online",
                **github_fresh,
            )
        elif kind < 18:  # 10 % GitHub says offline while the host heartbeats
            kw.update(fresh, **github_fresh, github_status="offline")
        elif kind < 19:  # 5 % short of disk
            kw.update(fresh, facts_problems=int(Flag.DISK_LOW))
        runners.append(Runner(**kw))  # the rest: never seen
    Runner.objects.bulk_create(runners, batch_size=2000)


def run(size: int) -> tuple[list[float], list[int], list[int]]:
    """Seconds, statements and transitions of each sweep over a fleet of ``size``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from runners import health
    from runners.models import Runner

    now = timezone.now()
    build_fleet(size, now)
    seconds, queries, transitions = [], [], []
    for step in range(4):
        at = now + timedelta(seconds=5 * step)
        if step == 3:
            # 1 % of the fleet stops heartbeating.
            silent = list(
                Runner.objects.filter(github_status="online", heartbeat_deadline__gt=at)
                .order_by("pk")
                .values_list("pk", flat=True)[: max(1, size // 100)]
            )
            Runner.objects.filter(pk__in=silent).update(
                heartbeat_deadline=at - timedelta(seconds=1)
            )
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            result = health.sweep(at)
            seconds.append(time.perf_counter() - started)
        queries.append(len(ctx.captured_queries))
        transitions.append(result.transitions)
    return seconds, queries, transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=10_000)
    args = parser.parse_args()
    url = database_url()
    setup_django(url)
    from django.db import connection

    small_seconds, small_queries, _ = run(100)
    seconds, queries, transitions = run(args.runners)
    print(
        f"{connection.vendor}: sweeps over {args.runners} runners took "
        + ", ".join(f"{s * 1000:.0f} ms" for s in seconds)
        + f"; statements {queries} (100 runners: {small_queries}); "
        f"transitions {transitions}"
    )
    emit(
        {
            "runners": args.runners,
            "seconds": round(max(seconds), 4),
            "db_queries": max(queries),
            "database": connection.vendor,
            "sweep_seconds": [round(s, 4) for s in seconds],
            "sweep_queries": queries,
            "sweep_queries_at_100": small_queries,
            "transitions": transitions,
        }
    )


if __name__ == "__main__":
    main()
