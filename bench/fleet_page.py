"""The fleet page, the home page's status board and the first page of the runners
API over a large fleet.

    python -m bench.fleet_page --runners 10000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_fleet \\
        python -m bench.fleet_page --runners 10000

Seeds the fleet in bulk (a realistic mix of states, labels, heartbeats, drained and
removed runners, some in environment pools), then requests ``/fleet/`` as a viewer
and ``/api/v1/runners/`` with an API token through the whole middleware stack (the
Django test client), ``--requests`` times each. Reports the median times and the
statements per request, which must be the same as for a fleet of 100.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta
from typing import Any

from bench import database_url, emit, setup_django


def build_fleet(size: int) -> None:
    from django.utils import timezone

    from deploys.models import Environment
    from runners.models import Reason, Runner, State

    Environment.objects.all().delete()
    Runner.objects.all().delete()
    now = timezone.now()
    runners = []
    for i in range(size):
        kind = i % 20
        kw: dict[str, Any] = {
            "name": f"bench-{i:06d}",
            "labels": ["self-hosted", "linux", "x64", f"pool-{i % 7}"],
            "github_status": "online",
            "github_seen_at": now - timedelta(seconds=i % 300),
            "last_heartbeat_at": now - timedelta(seconds=i % 10),
            "heartbeat_deadline": now + timedelta(seconds=10 + i % 10),
            "facts": {"runner_version": "2.321.0", "disk_free_bytes": 10**10},
            "state": State.HEALTHY,
            "reason": Reason.NONE,
        }
        if kind == 15:
            kw.update(state=State.UNHEALTHY, reason=Reason.HEARTBEAT_STALE)
            kw.update(heartbeat_deadline=now - timedelta(seconds=30))
        elif kind == 16:
            kw.update(state=State.DEGRADED, reason=Reason.DISK_LOW)
        elif kind == 17:
            kw.update(state=State.UNKNOWN, reason=Reason.NO_SIGNAL, drained=True)
        elif kind == 18:
            kw.update(removed_at=now - timedelta(days=1))
        runners.append(Runner(**kw))
    Runner.objects.bulk_create(runners, batch_size=2000)
    # A few environments with pools of three, like production deploy targets.
    first = list(Runner.objects.order_by("name")[:30])
    for n in range(10):
        environment = Environment.objects.create(name=f"env-{n}", repository="acme/app")
        environment.set_pool(first[n * 3 : n * 3 + 3])


def clients() -> tuple[Any, Any]:
    from django.contrib.auth.models import Group, User
    from django.test import Client
    from knox.models import AuthToken

    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.groups.add(Group.objects.get(name="viewer"))
    page_client = Client()
    page_client.force_login(user)
    _, token = AuthToken.objects.create(user, timedelta(hours=1))
    api_client = Client(headers={"Authorization": f"Token {token}"})
    return page_client, api_client


def measure(client: Any, url: str, requests: int) -> tuple[float, int]:
    """Median milliseconds of ``requests`` GETs of ``url``, and the statements one
    of them runs."""
    from django.db import connection

    statements: list[str] = []

    def count(execute: Any, sql: str, *args: Any) -> Any:
        statements.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return statistics.median(times), len(statements)


def run(size: int, requests: int) -> dict[str, Any]:
    build_fleet(size)
    page_client, api_client = clients()
    page_client.get("/")  # the session's first request saves it; later ones do not
    page_ms, page_queries = measure(page_client, "/fleet/", requests)
    partial_ms, _ = measure(
        _htmx(page_client), "/fleet/?state=healthy&label=linux", requests
    )
    api_ms, api_queries = measure(api_client, "/api/v1/runners/", requests)
    page_client.defaults.pop("HTTP_HX_REQUEST", None)
    home_ms, home_queries = measure(page_client, "/", requests)
    return {
        "home_ms": home_ms,
        "home_queries": home_queries,
        "page_ms": page_ms,
        "partial_ms": partial_ms,
        "api_ms": api_ms,
        "page_queries": page_queries,
        "api_queries": api_queries,
    }


def _htmx(client: Any) -> Any:
    client.defaults["HTTP_HX_REQUEST"] = "true"
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    setup_django(database_url())
    from django.conf import settings
    from django.db import connection

    # Time what a production server runs: no per-query debug logging, and none of
    # the test environment's template instrumentation (setup_test_environment); the
    # test client's host name is simply allowed.
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    small = run(100, 5)
    large = run(args.runners, args.requests)
    print(
        f"{connection.vendor}, {args.runners} runners: fleet page p50 "
        f"{large['page_ms']:.1f} ms ({large['page_queries']} statements; 100 runners: "
        f"{small['page_queries']}), live partial p50 {large['partial_ms']:.1f} ms, "
        f"API p50 {large['api_ms']:.1f} ms ({large['api_queries']} statements; 100 "
        f"runners: {small['api_queries']}), home page p50 {large['home_ms']:.1f} ms "
        f"({large['home_queries']} statements; 100 runners: "
        f"{small['home_queries']})"
    )
    emit(
        {
            "runners": args.runners,
            "page_p50_ms": round(large["page_ms"], 1),
            "api_p50_ms": round(large["api_ms"], 1),
            "queries": large["page_queries"],
            "api_queries": large["api_queries"],
            "queries_at_100": small["page_queries"],
            "api_queries_at_100": small["api_queries"],
            "partial_p50_ms": round(large["partial_ms"], 1),
            "home_p50_ms": round(large["home_ms"], 1),
            "home_queries": large["home_queries"],
            "home_queries_at_100": small["home_queries"],
            "database": connection.vendor,
        }
    )


if __name__ == "__main__":
    main()
