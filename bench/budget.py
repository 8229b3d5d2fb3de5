"""The GitHub API budget of one busy hour: 10,000 runners, 20 deploys in flight.

    python -m bench.budget
    python -m bench.budget --runners 10000 --deploys 20 --minutes 60

The real gateway (PyGithub over HTTP) talks to an in-process GitHub simulator whose
clock moves only when this benchmark moves it: both the simulator and the control
plane (``time_machine``) step through simulated time ``--tick`` seconds at a time,
so an hour takes a few minutes. At every tick the control plane does what its
beat and workers would: the runner sync when due (``sync_if_due``), the deploy
reconciler and every advance enqueued (by webhooks, by the engine itself), the
webhook recovery pass every 5 minutes. Webhooks flow: the simulator delivers them
to a small receiver, and each is posted, signed, to the real receiver view and
processed as the task would.

``--deploys`` environments (two runners each, the secret gate checking one
required secret) each deploy again as soon as their deploy ends, so that many are
always in flight; a deploy job takes ``--job-seconds``. The rest of the fleet runs
CI: ``--ci-jobs-per-minute`` jobs of ``--ci-job-minutes`` each start every minute
(busy runners change the runner list's pages and send job webhooks).

Canaries: ``--canary-runners`` more runners (150) sit in pools of environments that
do not deploy during the hour (10 runners a pool) with a canary every
``--canary-minutes`` (30); the deploying pools, busy all hour, have canaries off. The canary schedule runs every minute and its
watch at every tick; the shipped canary workflow's job takes ``--canary-seconds``.

Prints one JSON object: ``budget_share`` (requests charged to the budget, i.e. not
304, over the hourly rate limit; the target is at most 0.20), ``by_purpose``
(charged requests per purpose), and the 304s and deploys finished.
"""

from __future__ import annotations

import argparse
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import database_url, emit, setup_django

TOKEN = "bench-budget-token"  # noqa: S105 - the simulator accepts any token
SECRET = "bench-budget-webhook-secret"  # noqa: S105
REPOSITORY = "acme/deploy"
RECOVERY_EVERY = timedelta(minutes=5)
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CANARY_WORKFLOW = Path(__file__).resolve().parent.parent / (
    "diagnostics/workflows/runner-canary.yml"
)


def canary_conf_workflow() -> str:
    from diagnostics import canary_conf

    return canary_conf.workflow()


class Inbox:
    """Where the simulator delivers webhooks: kept for the main thread, which owns
    the database, to post to the control plane's receiver."""

    def __init__(self) -> None:
        self.items: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with inbox.lock:
                    inbox.items.append((dict(self.headers.items()), body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/github/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            items, self.items = self.items, []
        return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=10_000)
    parser.add_argument("--deploys", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--tick", type=float, default=2.0)
    parser.add_argument("--job-seconds", type=float, default=300.0)
    parser.add_argument("--ci-jobs-per-minute", type=int, default=50)
    parser.add_argument("--ci-job-minutes", type=float, default=10.0)
    parser.add_argument("--canary-runners", type=int, default=150)
    parser.add_argument("--canary-minutes", type=int, default=30)
    parser.add_argument("--canary-seconds", type=float, default=20.0)
    args = parser.parse_args()
    import time_machine

    with time_machine.travel(START, tick=False) as traveller:
        setup_django(database_url())
        result = run(args, traveller)
    emit(result)


def run(args: argparse.Namespace, traveller: Any) -> dict[str, Any]:
    from django.conf import settings

    settings.DEBUG = False
    # The receiver is called in-process, as Django's test client's host.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    from controlplane.celery import app

    # The receiver enqueues processing on commit; this loop processes instead.
    app.conf.update(broker_url="memory://", broker_transport_options={})
    from django.contrib.auth.models import User
    from django.test import Client
    from django.utils import timezone

    from controlplane.models import GitHubPurposeUsage, GitHubUsage
    from deploys import engine, enqueue, jobs, webhook_recovery
    from deploys.models import DeployRun, Environment, WebhookDelivery
    from deploys.triggers import request_deploy
    from diagnostics import canary
    from diagnostics.models import HostRun
    from githubsim import Simulator
    from githubsim.webhooks import HOOK_ID
    from runners import sync
    from runners.models import Runner, State

    GitHubUsage.objects.all().delete()
    GitHubPurposeUsage.objects.all().delete()
    due: set[int] = set()
    # The worker's queue: the advances enqueued are run by this loop.
    enqueue.advance = due.add  # type: ignore[assignment]

    inbox = Inbox()
    # A clock that moves only when advanced (a billionth of real time otherwise).
    sim = Simulator(
        time_scale=1e-9,
        seed=11,
        repository=REPOSITORY,
        pickup_delay=5.0,
        job_duration=args.job_seconds,
        offline_lag=30.0,
        webhook_url=inbox.url,
        webhook_secret=SECRET,
    )
    settings.GITHUB_API_URL = ""  # set below, once the simulator listens
    with sim:
        settings.GITHUB_API_URL = sim.url
        settings.GITHUB_TOKEN = TOKEN
        settings.GITHUB_APP_ID = ""
        settings.GITHUB_REPOSITORY = REPOSITORY
        settings.GITHUB_ORGANIZATION = ""
        settings.GITHUB_WEBHOOK_SECRET = SECRET
        settings.GITHUB_WEBHOOK_HOOK_ID = HOOK_ID
        from controlplane.github import reset_gateway

        reset_gateway()
        pools = [(f"pool-{n}-a", f"pool-{n}-b") for n in range(args.deploys)]
        for pair in pools:
            for name in pair:
                sim.add_runner(name)
        canary_pools = [
            [
                f"canary-{p}-{n}"
                for n in range(p * 10, min(p * 10 + 10, args.canary_runners))
            ]
            for p in range(-(-args.canary_runners // 10))
        ]
        for pool in canary_pools:
            for name in pool:
                sim.add_runner(name)
        sim.add_runners(
            args.runners - 2 * len(pools) - args.canary_runners,
            prefix="ci",
            labels=["ci"],
        )
        canary_flow = sim.set_workflow(
            canary_conf_workflow(), yaml=CANARY_WORKFLOW.read_text()
        )
        canary_flow.jobs[0].duration = args.canary_seconds
        sim.state.set_secret(("repository", REPOSITORY), "DEPLOY_KEY", "x")
        sim.webhooks.wait_idle()
        inbox.take()  # the ping

        def step(seconds: float) -> datetime:
            traveller.shift(seconds)
            sim.clock.advance(seconds)
            sim.state.tick()
            return timezone.now()

        # The registry as it would be after the first sweep: not part of the hour.
        sync.sync_fleet()
        Runner.objects.filter(name__startswith="pool-").update(
            state=State.HEALTHY, reason=""
        )
        for p, pool in enumerate(canary_pools):
            quiet = Environment.objects.create(
                name=f"quiet-{p}",
                repository=REPOSITORY,
                workflow_file="deploy.yml",
                canary_interval_minutes=args.canary_minutes,
            )
            quiet.set_pool(list(Runner.objects.filter(name__in=pool).order_by("pk")))
        envs = []
        for n, pair in enumerate(pools):
            env = Environment.objects.create(
                name=f"service-{n}",
                repository=REPOSITORY,
                workflow_file="deploy.yml",
                default_ref="main",
                required_secrets=["DEPLOY_KEY"],
                # Deploying all hour, these pools would get no canary anyway; off,
                # so the canary runners are exactly --canary-runners.
                canary_interval_minutes=0,
            )
            env.set_pool([Runner.objects.get(name=name) for name in pair])
            envs.append(env)
        sre = User.objects.create_user("bench-sre")
        GitHubUsage.objects.all().delete()
        GitHubPurposeUsage.objects.all().delete()

        client = Client()
        started = timezone.now()
        end = started + timedelta(minutes=args.minutes)
        next_recovery = next_ci = next_report = next_canary = started
        finished = 0
        active: dict[int, int] = {}
        now = started
        while now < end:
            for env in envs:
                run_id = active.get(env.pk)
                if run_id is not None:
                    state = DeployRun.objects.values_list("state", flat=True).get(
                        pk=run_id
                    )
                    if state not in DeployRun.FINAL_STATES:
                        continue
                    finished += 1
                active[env.pk] = request_deploy(sre, env).run.pk
                due.add(active[env.pk])
            _deliver_webhooks(sim, inbox, client, jobs, WebhookDelivery)
            engine.reconcile(now)
            while due:
                for run_id in sorted(due):
                    due.discard(run_id)
                    engine.advance(run_id, now=now)
                _deliver_webhooks(sim, inbox, client, jobs, WebhookDelivery)
            sync.sync_if_due(now)
            if now >= next_canary:
                canary.schedule_due(now)
                next_canary = now + timedelta(seconds=canary.SCHEDULE_EVERY)
            canary.watch_due(now)
            if now >= next_recovery:
                webhook_recovery.recover(now)
                next_recovery = now + RECOVERY_EVERY
            if now >= next_ci and args.ci_jobs_per_minute:
                # Everything else the fleet runs: busy runners, job webhooks.
                sim.state.start_traffic(
                    REPOSITORY,
                    labels=["ci"],
                    count=args.ci_jobs_per_minute,
                    duration=args.ci_job_minutes * 60,
                )
                next_ci = now + timedelta(minutes=1)
            if now >= next_report:
                progress(now - started, GitHubPurposeUsage)
                next_report = now + timedelta(minutes=10)
            now = step(args.tick)
        limit = sim.state.config.rate_limit
    inbox.server.shutdown()
    result = report(args, limit, finished, GitHubPurposeUsage, GitHubUsage)
    result["webhooks"] = dict(
        Counter(WebhookDelivery.objects.values_list("outcome", flat=True))
    )
    result["canary_runners"] = args.canary_runners
    result["canary_minutes"] = args.canary_minutes
    result["canaries"] = dict(
        Counter(
            HostRun.objects.filter(kind=HostRun.Kind.CANARY).values_list(
                "state", flat=True
            )
        )
    )
    return result


def progress(elapsed: timedelta, GitHubPurposeUsage: Any) -> None:
    shares = GitHubPurposeUsage.objects.shares()
    spent = ", ".join(f"{r['purpose']} {r['charged']}" for r in shares)
    print(f"{elapsed} simulated: {spent or 'nothing charged yet'}", flush=True)


def _deliver_webhooks(
    sim: Any, inbox: Inbox, client: Any, jobs: Any, WebhookDelivery: Any
) -> None:
    """Post what the simulator sent to the real receiver, then process it."""
    sim.webhooks.wait_idle()
    for headers, body in inbox.take():
        response = client.post(
            "/github/webhook",
            body,
            content_type="application/json",
            headers={
                name: value
                for name, value in headers.items()
                if name.lower().startswith("x-")
            },
        )
        if response.status_code != 202:
            continue
        # urllib capitalizes header names (X-github-delivery).
        lowered = {name.lower(): value for name, value in headers.items()}
        delivery_id = lowered.get("x-github-delivery", "")
        pk = (
            WebhookDelivery.objects.filter(delivery_id=delivery_id)
            .values_list("pk", flat=True)
            .first()
        )
        if pk is not None:
            jobs.process_delivery(pk)


def report(
    args: argparse.Namespace,
    limit: int,
    finished: int,
    GitHubPurposeUsage: Any,
    GitHubUsage: Any,
) -> dict[str, Any]:
    shares = GitHubPurposeUsage.objects.shares()
    charged = sum(row["charged"] for row in shares)
    usage = GitHubUsage.objects.filter(pk=1).first()
    hours = args.minutes / 60.0
    for row in shares:
        print(
            f"{row['purpose']:>18}: {row['charged']:6d} charged "
            f"({row['share']:.0%}), {row['not_modified']:6d} not modified",
            flush=True,
        )
    return {
        "runners": args.runners,
        "deploys_in_flight": args.deploys,
        "minutes": args.minutes,
        "rate_limit": limit,
        "budget_share": round(charged / (limit * hours), 4),
        "charged_requests": charged,
        "requests": usage.requests_total if usage else 0,
        "not_modified": usage.not_modified_total if usage else 0,
        "by_purpose": {row["purpose"]: row["charged"] for row in shares},
        "not_modified_by_purpose": {
            row["purpose"]: row["not_modified"] for row in shares
        },
        "deploys_finished": finished,
    }


if __name__ == "__main__":
    main()
