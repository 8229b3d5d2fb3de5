"""The inventory's panel on the home status board and its /metrics collector over a
large fleet held against a large inventory.

    python -m bench.inventory_drift --runners 10000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_drift \\
        python -m bench.inventory_drift --runners 10000

Seeds ``--runners`` registered runners and loads an INI inventory of as many hosts
(through ``inventory.loading``, as the API does), drifting in every way the drift
page names: removed and unlinked runners and never-registered hosts (missing),
registered runners the inventory omits (rogue), absent and unexpected labels
(labels differ), and matches that differ only in case or in GitHub's default
labels. Then builds the board panel and collects the metrics ``--requests`` times
each. Both run on every 5 s refresh of the home page and every scrape, so they must
stay within a few milliseconds whatever the fleet's size. Reports the median times,
the statements each runs, and the counts, which must equal the drift page's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench import database_url, emit, setup_django

# One runner in a hundred of each kind; the rest match the inventory.
REMOVED, UNLINKED, ROGUE, ABSENT, CASE_ONLY, UNEXPECTED, UNCHECKED = range(7)


def build(size: int) -> None:
    """``size`` runners and an inventory of ``size`` hosts (every hundredth host
    never registered replacing a rogue runner)."""
    from django.utils import timezone

    from inventory.loading import load_text
    from inventory.models import InventoryLoad
    from runners.models import Runner

    InventoryLoad.objects.all().delete()
    Runner.objects.all().delete()
    now = timezone.now()
    runners = []
    lines = ["[runners]"]
    for i in range(size):
        kind = i % 100
        name = f"bench-{i:06d}"
        labels = ["self-hosted", "Linux", "X64", f"pool-{i % 7}"]
        declared = f"pool-{i % 7}"
        if kind == UNEXPECTED:
            labels.append("gpu")
        elif kind == ABSENT:
            declared += ",deploy"
        elif kind == CASE_ONLY:
            labels.append(name)
            declared = f"Self-Hosted,POOL-{i % 7},{name.upper()}"
        runners.append(
            Runner(
                name=name,
                github_id=None if kind == UNLINKED else i + 1,
                labels=labels,
                github_status="online",
                first_seen_at=now,
                removed_at=now - timedelta(days=1) if kind == REMOVED else None,
            )
        )
        if kind == ROGUE:
            lines.append(f"never-{i:06d} runner_labels=pool-{i % 7}")
        elif kind == UNCHECKED:
            lines.append(name)
        else:
            lines.append(f"{name} runner_labels={declared}")
    Runner.objects.bulk_create(runners, batch_size=2000)
    load_text(
        "\n".join(lines) + "\n",
        "ini",
        source=InventoryLoad.Source.API,
        actor="bench",
        now=now,
    )


def measure(call: Callable[[], Any], repeats: int) -> tuple[float, int]:
    """Median milliseconds of ``repeats`` calls, and the statements one runs."""
    from django.db import connection

    statements: list[str] = []

    def count(execute: Any, sql: str, *args: Any) -> Any:
        statements.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(count):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(statements)


def run(size: int, repeats: int) -> dict[str, Any]:
    from django.utils import timezone

    from inventory import drift
    from inventory.board import inventory_panel
    from inventory.metrics import InventoryCollector

    build(size)
    now = timezone.now()
    panel = inventory_panel(now)
    counts = {kind: count for kind, _, count in panel.context["kinds"]}
    found = drift.compute()
    assert found is not None
    assert counts == found.counts(), (counts, found.counts())
    panel_ms, panel_queries = measure(lambda: inventory_panel(now), repeats)
    collector = InventoryCollector()
    metrics_ms, metrics_queries = measure(lambda: list(collector.collect()), repeats)
    page_ms, _ = measure(drift.compute, max(1, repeats // 5))
    return {
        "panel_ms": panel_ms,
        "panel_queries": panel_queries,
        "metrics_ms": metrics_ms,
        "metrics_queries": metrics_queries,
        "page_ms": page_ms,
        "counts": counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    setup_django(database_url())
    from django.conf import settings
    from django.db import connection

    settings.DEBUG = False
    small = run(100, 5)
    large = run(args.runners, args.requests)
    print(
        f"{connection.vendor}, {args.runners} runners against {args.runners} hosts "
        f"({large['counts']}): board panel p50 {large['panel_ms']:.1f} ms "
        f"({large['panel_queries']} statements; 100 runners: "
        f"{small['panel_queries']}), /metrics collector p50 "
        f"{large['metrics_ms']:.1f} ms ({large['metrics_queries']} statements), "
        f"full drift (the drift page) p50 {large['page_ms']:.1f} ms"
    )
    emit(
        {
            "runners": args.runners,
            "hosts": args.runners,
            "panel_p50_ms": round(large["panel_ms"], 1),
            "panel_queries": large["panel_queries"],
            "panel_queries_at_100": small["panel_queries"],
            "metrics_p50_ms": round(large["metrics_ms"], 1),
            "metrics_queries": large["metrics_queries"],
            "metrics_queries_at_100": small["metrics_queries"],
            "full_drift_p50_ms": round(large["page_ms"], 1),
            "drift": large["counts"],
            "database": connection.vendor,
        }
    )


if __name__ == "__main__":
    main()
