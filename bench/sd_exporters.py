"""Prometheus service discovery (``/sd/exporters``) over a large fleet.

    python -m bench.sd_exporters --runners 10000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sd \\
        python -m bench.sd_exporters --runners 10000

Seeds the fleet in bulk (every runner with an exporter URL, one in twenty removed,
150 of them in pools of three), then requests ``/sd/exporters`` with the bearer
token through the whole middleware stack (the Django test client), ``--requests``
times. Reports the median time, the answer's size and the statements per request,
which must be the same as for a fleet of 100. Prometheus asks once per refresh
interval (one minute by default) per Prometheus server.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench import database_url, emit, setup_django

TOKEN = "bench-sd-token-0123456789abcdef"  # noqa: S105
POOLED = 150


def build_fleet(size: int) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from deploys.models import Environment
    from runners.models import Runner, State

    Environment.objects.all().delete()
    Runner.objects.all().delete()
    now = timezone.now()
    states = [State.HEALTHY] * 17 + [State.DEGRADED, State.UNHEALTHY, State.UNKNOWN]
    Runner.objects.bulk_create(
        [
            Runner(
                name=f"bench-{i:06d}",
                exporter_url=f"http://bench-{i:06d}.hosts.example:9100/metrics",
                state=states[i % len(states)],
                removed_at=now - timedelta(days=1) if i % 20 == 19 else None,
            )
            for i in range(size)
        ],
        batch_size=2000,
    )
    pooled = list(Runner.objects.active().order_by("name")[: min(POOLED, size)])
    for n in range(0, len(pooled), 3):
        environment = Environment.objects.create(
            name=f"env-{n // 3:03d}", repository="acme/app"
        )
        environment.set_pool(pooled[n : n + 3])


def measure(requests: int) -> tuple[float, int, int, int]:
    """Median milliseconds of ``requests`` discoveries, the statements one runs, its
    bytes and its target groups."""
    import json

    from django.db import connection
    from django.test import Client

    client = Client(headers={"Authorization": f"Bearer {TOKEN}"})
    statements: list[str] = []

    def count(execute: Any, sql: str, *args: Any) -> Any:
        statements.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(count):
        response = client.get("/sd/exporters")
    assert response.status_code == 200, response.status_code
    groups = len(json.loads(response.content))
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get("/sd/exporters")
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return statistics.median(times), len(statements), len(response.content), groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    setup_django(database_url())
    from django.conf import settings
    from django.db import connection

    # What a production server runs: no per-query debug logging.
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.SD_BEARER_TOKEN = TOKEN
    settings.SD_BEARER_TOKEN_FILE = ""
    build_fleet(100)
    _, small_queries, _, _ = measure(3)
    build_fleet(args.runners)
    ms, queries, size, groups = measure(args.requests)
    print(
        f"{connection.vendor}, {args.runners} runners ({groups} targets): "
        f"/sd/exporters p50 {ms:.1f} ms, {size / 1024:.0f} KiB, {queries} statements "
        f"(100 runners: {small_queries})"
    )
    emit(
        {
            "runners": args.runners,
            "targets": groups,
            "p50_ms": round(ms, 1),
            "bytes": size,
            "queries": queries,
            "queries_at_100": small_queries,
            "database": connection.vendor,
        }
    )


if __name__ == "__main__":
    main()
