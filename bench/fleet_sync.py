"""Runner registry sync of a large fleet: GitHub requests, budget, time, statements.

    python -m bench.fleet_sync --runners 10000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sync \\
        python -m bench.fleet_sync --runners 10000

The real gateway (PyGithub over HTTP) reads an in-process GitHub simulator holding
``--runners`` runners into an empty registry (the first sweep), then sweeps again
with nothing changed (every page answers 304: no budget spent), then once more
after 1 % of the hosts died (GitHub shows them offline: only their pages change).
``github_requests`` counts the first sweep's requests, ``github_requests_unchanged``
the budget the unchanged sweep spent.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import database_url, emit, setup_django

TOKEN = "bench-fleet-sync-token"  # noqa: S105 - the simulator accepts any token


class QueryCounter:
    """Counts statements without Django's debug cursor, whose formatting of every
    statement's parameters would dominate the time being measured."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(
        self, execute: Any, sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def measure(label: str, sweep: Any, sim: Any) -> dict[str, Any]:
    from django.db import connection

    requests_before = sum(sim.state.request_counts().values())
    budget_before = sim.state.limits.budget(TOKEN)[1]
    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        started = time.perf_counter()
        cpu_started = time.process_time()
        result = sweep()
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    row = {
        "seconds": round(seconds, 3),
        # This process's CPU, the in-process simulator's included: on a shared
        # machine the wall time also counts other programs' turns.
        "cpu_seconds": round(cpu, 3),
        "github_requests": sum(sim.state.request_counts().values()) - requests_before,
        "budget_spent": budget_before - sim.state.limits.budget(TOKEN)[1],
        "not_modified": result.not_modified,
        "db_queries": counter.count,
        "listed": result.listed,
        "appeared": result.appeared,
        "removed": result.removed,
    }
    print(f"{label}: {row}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=10_000)
    args = parser.parse_args()
    setup_django(database_url())
    from django.conf import settings

    # As in production: DEBUG keeps a formatted copy of every statement.
    settings.DEBUG = False
    from django.db import connection

    from controlplane.github import gateway_from_settings
    from controlplane.models import GitHubUsage
    from githubsim import Simulator
    from runners import sync
    from runners.models import HealthSample, Runner, RunnerEvent, RunnerSync

    RunnerEvent.objects.all().delete()
    HealthSample.objects.all().delete()
    Runner.objects.all().delete()
    RunnerSync.objects.all().delete()
    GitHubUsage.objects.all().delete()

    with Simulator(runners=args.runners, offline_lag=0.0) as sim:
        gw = gateway_from_settings(base_url=sim.url, token=TOKEN)
        first = measure("first sweep", lambda: sync.sync_fleet(gw=gw), sim)
        assert Runner.objects.count() == args.runners
        unchanged = measure("unchanged sweep", lambda: sync.sync_fleet(gw=gw), sim)
        dead = [f"runner-{n}" for n in range(1, args.runners + 1, 100)]
        for name in dead:
            sim.kill(name)
        sim.wait_until(
            lambda: all(sim.state.runner(n).status == "offline" for n in dead),
            timeout=10,
        )
        changed = measure("1 % died", lambda: sync.sync_fleet(gw=gw), sim)
        budget = sync.sync_budget()
    offline = Runner.objects.filter(github_status="offline").count()
    print(
        f"{connection.vendor}: {args.runners} runners; budget share "
        f"{budget.share:g} of {budget.rate_limit}/h gives a sweep every "
        f"{budget.interval_seconds:.0f} s ({budget.pages_per_sweep} pages, at most "
        f"{budget.requests_per_hour:.0f} requests/h); {offline} runners offline "
        "after the last sweep",
        flush=True,
    )
    emit(
        {
            "runners": args.runners,
            "seconds": first["seconds"],
            "github_requests": first["github_requests"],
            "github_requests_unchanged": unchanged["budget_spent"],
            "db_queries": first["db_queries"],
            "database": connection.vendor,
            "cpu_seconds": first["cpu_seconds"],
            "unchanged_seconds": unchanged["seconds"],
            "unchanged_requests": unchanged["github_requests"],
            "unchanged_not_modified": unchanged["not_modified"],
            "unchanged_db_queries": unchanged["db_queries"],
            "changed_seconds": changed["seconds"],
            "changed_budget_spent": changed["budget_spent"],
            "changed_db_queries": changed["db_queries"],
            "sync_interval_seconds": round(budget.interval_seconds, 1),
        }
    )


if __name__ == "__main__":
    main()
