"""Deploy outcome (DORA) figures over a long history: what a /metrics scrape and the
environment page pay for them.

    python -m bench.dora --environments 20 --deploys 2000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_dora \\
        python -m bench.dora --environments 20 --deploys 2000

Seeds ``--environments`` environments with ``--deploys`` finished deploys each, spread
over the DORA window (new commits with their commit dates, redeploys, failed deploys,
rollbacks, deploys that never reached a runner), then times the DORA collector alone
(``--scrapes`` times) and one environment page. Reports medians and statements, which
must be the same as for a history of 10 deploys. A scrape reuses the figures of
environments whose history did not change (``deploys.dora``'s memo): the cold scrape
recomputes every environment, as when a deploy finished in each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta
from typing import Any

from bench import database_url, emit, setup_django


def seed(environments: int, deploys: int) -> None:
    from django.utils import timezone

    from deploys.models import CommitDate, DeployRun, Environment, Rollback

    DeployRun.objects.all().delete()
    Environment.objects.all().delete()
    CommitDate.objects.all().delete()
    now = timezone.now()
    step = timedelta(days=29) / max(1, deploys)
    for e in range(environments):
        env = Environment.objects.create(name=f"env-{e:03d}", repository="acme/app")
        runs: list[DeployRun] = []
        dates: list[CommitDate] = []
        for i in range(deploys):
            finished = now - timedelta(days=29) + step * i
            kind = i % 10
            sha = f"{e:04x}{i:036x}" if kind not in (3, 9) else f"{e:04x}{i - 1:036x}"
            state, reason = DeployRun.State.SUCCEEDED, ""
            if kind == 5:
                state, reason = DeployRun.State.FAILED, DeployRun.Reason.DEPLOY_FAILED
            elif kind == 7:
                reason = DeployRun.Reason.NO_HEALTHY_RUNNER
                state = DeployRun.State.FAILED
            runs.append(
                DeployRun(
                    environment=env,
                    ref="main",
                    sha=sha,
                    state=state,
                    reason=reason,
                    created_at=finished - timedelta(minutes=5),
                    finished_at=finished,
                )
            )
            if kind not in (3, 9):
                dates.append(
                    CommitDate(
                        repository=f"acme/app-{e}",
                        sha=sha,
                        committed_at=finished - timedelta(hours=1 + i % 48),
                    )
                )
        created = DeployRun.objects.bulk_create(runs, batch_size=2000)
        CommitDate.objects.bulk_create(dates, batch_size=2000)
        # Every twentieth deploy is rolled back by the one after it.
        Rollback.objects.bulk_create(
            [
                Rollback(run=created[i + 1], replaced=created[i])
                for i in range(0, len(created) - 1, 20)
            ]
        )
        env.repository = f"acme/app-{e}"
        env.save(update_fields=["repository"])


def statements_of(action: Any) -> int:
    from django.db import connection

    statements: list[str] = []

    def count(execute: Any, sql: str, *args: Any) -> Any:
        statements.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(count):
        action()
    return len(statements)


def median_ms(action: Any, times: int) -> float:
    found = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        found.append((time.perf_counter() - started) * 1000)
    return statistics.median(found)


def run(environments: int, deploys: int, scrapes: int) -> dict[str, Any]:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from deploys.dora import DoraCollector, forget

    seed(environments, deploys)
    collector = DoraCollector()

    def scrape() -> None:
        list(collector.collect())

    def cold_scrape() -> None:
        forget()  # as after a deploy finished in every environment
        scrape()

    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)
    client.get("/")
    page_url = "/deploys/environments/env-000/"

    def page() -> None:
        assert client.get(page_url).status_code == 200

    return {
        "cold_scrape_ms": median_ms(cold_scrape, scrapes),
        "cold_scrape_queries": statements_of(cold_scrape),
        "scrape_ms": median_ms(scrape, scrapes),
        "scrape_queries": statements_of(scrape),
        "page_ms": median_ms(page, scrapes),
        "page_queries": statements_of(page),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--environments", type=int, default=20)
    parser.add_argument("--deploys", type=int, default=2000)
    parser.add_argument("--scrapes", type=int, default=5)
    args = parser.parse_args()
    setup_django(database_url())
    from django.conf import settings
    from django.db import connection

    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    small = run(args.environments, 10, 1)
    large = run(args.environments, args.deploys, args.scrapes)
    print(
        f"{connection.vendor}, {args.environments} environments x {args.deploys} "
        f"deploys: DORA scrape p50 {large['scrape_ms']:.1f} ms "
        f"({large['scrape_queries']} statements; 10 deploys each: "
        f"{small['scrape_queries']}), recomputing every environment "
        f"{large['cold_scrape_ms']:.1f} ms ({large['cold_scrape_queries']} "
        f"statements), environment page p50 {large['page_ms']:.1f} ms "
        f"({large['page_queries']} statements; 10 deploys: {small['page_queries']})"
    )
    emit(
        {
            "environments": args.environments,
            "deploys_per_environment": args.deploys,
            "scrape_p50_ms": round(large["scrape_ms"], 1),
            "scrape_queries": large["scrape_queries"],
            "scrape_queries_at_10": small["scrape_queries"],
            "cold_scrape_p50_ms": round(large["cold_scrape_ms"], 1),
            "cold_scrape_queries": large["cold_scrape_queries"],
            "cold_scrape_queries_at_10": small["cold_scrape_queries"],
            "page_p50_ms": round(large["page_ms"], 1),
            "page_queries": large["page_queries"],
            "page_queries_at_10": small["page_queries"],
            "database": connection.vendor,
        }
    )


if __name__ == "__main__":
    main()
