"""Failover end to end: how fast a deploy reaches a working runner when the primary fails.

    python -m bench.failover
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_failover \\
        python -m bench.failover

Starts the simulator (real time, webhooks to the control plane), gunicorn, a Celery
worker and beat at default settings (see :mod:`bench._processes`), with three
environments of two runners each, so the scenarios never share a runner. Deploys
are requested through ``POST /api/v1/deploys/``; every moment is observed from the
outside, in the simulator (which runner holds which job, polled every 50 ms).

1. ``dispatch_seconds``: the primary host is dead and already unhealthy when the
   deploy is requested; from the request to the dispatch on the secondary.
2. ``failover_seconds``: the primary host dies in the middle of the deploy job;
   from the death to the secondary picking the job up.
3. ``dispatch_5xx_seconds``: GitHub creates the run but answers the dispatch 502;
   from the request to the primary picking the job up (found by its token, not
   dispatched twice).
4. ``pickup_timeout_failover_seconds``: the primary is healthy and heartbeats, but
   is busy with a long job started outside the control plane; from the request to
   the secondary picking the job up, with the environment's ``busy_wait`` and
   pickup timeout at their defaults.

5. ``multijob_failover_seconds``: a multi-job workflow (build on a GitHub-hosted
   runner → deploy on the pinned runner → smoke test); the primary host dies while
   the build runs; from the death to the secondary picking the deploy job up (after
   the new attempt's own build), and the deploy must succeed.
6. ``approval_hold_failovers`` and ``approval_hold_dispatches``: the deploy job's
   GitHub environment has required reviewers; the deploy is held 10 minutes of
   simulated time (the engine is stepped on a clock jumped ahead, far past the
   pickup timeout), then an SRE approves it through the API; counted once the
   primary picks the job up (must be 0 failovers and 1 dispatch);
   ``approval_hold_seconds`` is from the request to that pickup.

Each scenario is a function of :data:`SCENARIOS`, with its own environment
(``failover-<name>``) and runners (``fo-<name>-primary``, ``fo-<name>-secondary``),
and adds one key to the output. It also reports the deploy's timeline (seconds from
its start to each event), which shows where the time goes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import emit
from bench._processes import Stack, call, prepare, setup_django, wait_until

# A deploy job runs five minutes: long enough to die in the middle of it.
JOB_SECONDS = 300
# How long the primary works on the job before its host dies.
MID_JOB_SECONDS = 5.0
POLL = 0.05
REPOSITORY = "acme/deploy"
# The multi-job scenario's workflow: the shipped build → deploy → smoke pipeline. The
# build outlasts the primary's turn to unhealthy, so the failover happens mid-build.
PIPELINE_FILE = Path(__file__).parent.parent / "deploys/workflows/deploy-pipeline.yml"
MULTIJOB_WORKFLOW = "deploy-multijob.yml"
MULTIJOB_SECONDS = {"build": 45, "deploy": 10, "smoke": 5}
# How long the build runs before the primary's host dies.
MID_BUILD_SECONDS = 5.0


def primary(scenario: str) -> str:
    return f"fo-{scenario}-primary"


def secondary(scenario: str) -> str:
    return f"fo-{scenario}-secondary"


def add_runners(stack: Stack) -> None:
    for scenario in SCENARIOS:
        for name in (primary(scenario.name), secondary(scenario.name)):
            stack.sim("POST", "/_sim/runners", {"name": name, "labels": ["bench"]})
    stack.sim("POST", "/_sim/config", {"job_duration": JOB_SECONDS})
    path = f"/_sim/repos/{REPOSITORY}/workflows/{MULTIJOB_WORKFLOW}"
    stack.sim("PUT", path, {"yaml": PIPELINE_FILE.read_text()})
    for job, seconds in MULTIJOB_SECONDS.items():
        stack.sim("POST", f"{path}/jobs/{job}", {"duration": seconds})


class Bench:
    """The stack plus an SRE's API token and the environments, set up in the DB."""

    def __init__(self, stack: Stack) -> None:
        from django.contrib.auth.models import Group, User
        from knox.models import AuthToken

        from deploys.models import Environment
        from runners.models import Runner

        self.stack = stack
        user = User.objects.create(username="bench-sre")
        user.groups.add(Group.objects.get(name="sre"))
        self.token = AuthToken.objects.create(user)[1]
        for scenario in SCENARIOS:
            env = Environment.objects.create(
                name=f"failover-{scenario.name}",
                repository=REPOSITORY,
                workflow_file=(
                    MULTIJOB_WORKFLOW if scenario.name == "multijob" else "deploy.yml"
                ),
                required_secrets=["DEPLOY_KEY"],
            )
            env.set_pool(
                [
                    Runner.objects.get(name=primary(scenario.name)),
                    Runner.objects.get(name=secondary(scenario.name)),
                ]
            )

    def request(self, scenario: str) -> tuple[int, float]:
        """Request a deploy through the API; its id and when the request was sent."""
        sent = time.time()
        answer = call(
            f"{self.stack.web_url}/api/v1/deploys/",
            "POST",
            {"environment": f"failover-{scenario}", "ref": "main"},
            {
                "Authorization": f"Token {self.token}",
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        return int(answer["id"]), sent

    def job_on(self, runner: str, statuses: tuple[str, ...]) -> dict[str, Any] | None:
        """The simulator's job aimed at ``runner`` in one of ``statuses``, if any."""
        for job in self.stack.sim("GET", "/_sim/jobs")["jobs"]:
            if runner in job["labels"] and job["status"] in statuses:
                return dict(job)
        return None

    def seen(self, runner: str, statuses: tuple[str, ...], timeout: float) -> float:
        """When the simulator first shows a job for ``runner`` in ``statuses``."""
        wait_until(
            lambda: self.job_on(runner, statuses),
            timeout,
            f"a job {'/'.join(statuses)} on {runner}",
            step=POLL,
        )
        return time.time()

    def runner_state(self, name: str) -> str:
        from django.db import close_old_connections

        from runners.models import Runner

        close_old_connections()
        return str(Runner.objects.get(name=name).state)

    def timeline(self, run_id: int, origin: float) -> list[str]:
        """The deploy's events as "+seconds kind (message)" from ``origin``."""
        from django.db import close_old_connections

        from deploys.models import DeployEvent

        close_old_connections()
        events = DeployEvent.objects.filter(run_id=run_id).order_by("created_at", "pk")
        return [
            f"+{e.created_at.timestamp() - origin:.2f} {e.kind}: {e.message}"
            for e in events
        ]

    def unhealthy_at(self, name: str) -> datetime | None:
        from runners.models import Runner, RunnerEvent, State

        event = (
            RunnerEvent.objects.filter(
                runner=Runner.objects.get(name=name),
                kind=RunnerEvent.Kind.STATE_CHANGE,
                to_state=State.UNHEALTHY,
            )
            .order_by("-created_at")
            .first()
        )
        return event.created_at if event else None


def dead_primary(bench: Bench, timeout: float) -> dict[str, Any]:
    """The primary host is dead and known unhealthy before the request."""
    bench.stack.kill_host(primary("dead"))
    wait_until(
        lambda: bench.runner_state(primary("dead")) == "unhealthy",
        timeout,
        "the dead primary to turn unhealthy",
    )
    run_id, sent = bench.request("dead")
    dispatched = bench.seen(secondary("dead"), ("queued", "in_progress"), timeout)
    return {
        "seconds": round(dispatched - sent, 3),
        "timeline": bench.timeline(run_id, sent),
    }


def primary_dies_mid_job(bench: Bench, timeout: float) -> dict[str, Any]:
    """The primary picks the job up, then its host dies."""
    run_id, sent = bench.request("midjob")
    bench.seen(primary("midjob"), ("in_progress",), timeout)
    time.sleep(MID_JOB_SECONDS)
    killed = time.time()
    bench.stack.kill_host(primary("midjob"))
    picked_up = bench.seen(secondary("midjob"), ("in_progress",), timeout)
    unhealthy = bench.unhealthy_at(primary("midjob"))
    return {
        "seconds": round(picked_up - killed, 3),
        "primary_unhealthy_after": (
            round(unhealthy.timestamp() - killed, 3) if unhealthy else None
        ),
        "timeline": bench.timeline(run_id, killed),
    }


def dispatch_answered_5xx(bench: Bench, timeout: float) -> dict[str, Any]:
    """GitHub creates the run, then answers the dispatch 502 (its front timed out
    while the backend did the work): the control plane must find the run by its
    token, not dispatch again, and not wait a poll interval to do so."""
    bench.stack.sim("POST", "/_sim/faults", {"dispatch_errors_after_create": 1})
    try:
        run_id, sent = bench.request("5xx")
        picked_up = bench.seen(primary("5xx"), ("in_progress",), timeout)
    finally:
        bench.stack.sim("POST", "/_sim/faults", {"dispatch_errors_after_create": 0})
    jobs = [
        job
        for job in bench.stack.sim("GET", "/_sim/jobs")["jobs"]
        if primary("5xx") in job["labels"] or secondary("5xx") in job["labels"]
    ]
    return {
        "seconds": round(picked_up - sent, 3),
        "dispatches": len(jobs),
        "timeline": bench.timeline(run_id, sent),
    }


def primary_never_picks_up(bench: Bench, timeout: float) -> dict[str, Any]:
    """The primary is healthy but busy with a long job GitHub gave it earlier (a
    run started by hand). Its ``workflow_job`` webhook tells the gate, which waits
    ``busy_wait`` for it and then takes the secondary (before the busy-aware gate,
    the job sat queued on the primary until the pickup timeout; the key keeps its
    name)."""
    call(
        f"{bench.stack.sim_url}/repos/{REPOSITORY}/actions/workflows/deploy.yml/"
        "dispatches",
        "POST",
        {
            "ref": "main",
            # What the shipped deploy.yml requires, should the bench load it first.
            "inputs": {
                "runner": primary("pickup"),
                "token": "by-hand",
                "sha": "",
                "environment": "failover-pickup",
            },
        },
        {"Authorization": "token bench-token"},
    )
    bench.seen(primary("pickup"), ("in_progress",), timeout)
    run_id, sent = bench.request("pickup")
    picked_up = bench.seen(secondary("pickup"), ("in_progress",), timeout)
    return {
        "seconds": round(picked_up - sent, 3),
        "primary_state": bench.runner_state(primary("pickup")),
        "timeline": bench.timeline(run_id, sent),
    }


def deploy_state(run_id: int) -> tuple[str, int | None]:
    """The deploy's state and its current attempt's GitHub run id."""
    from django.db import close_old_connections

    from deploys.models import DeployRun

    close_old_connections()
    run = DeployRun.objects.get(pk=run_id)
    attempt = run.attempts.order_by("-number").first()
    return str(run.state), attempt.github_run_id if attempt else None


def primary_dies_during_build(bench: Bench, timeout: float) -> dict[str, Any]:
    """Multi-job workflow: the primary host dies while the build job runs."""
    run_id, sent = bench.request("multijob")
    github_run = wait_until(
        lambda: deploy_state(run_id)[1], timeout, "the multi-job dispatch"
    )

    def building() -> bool:
        jobs = bench.stack.sim("GET", f"/_sim/runs/{github_run}")["jobs"]
        return any(j["name"] == "build" and j["status"] == "in_progress" for j in jobs)

    wait_until(building, timeout, "the build job to start", step=POLL)
    time.sleep(MID_BUILD_SECONDS)
    killed = time.time()
    bench.stack.kill_host(primary("multijob"))
    picked_up = bench.seen(secondary("multijob"), ("in_progress",), timeout)
    state = wait_until(
        lambda: (
            (s := deploy_state(run_id)[0]) in ("succeeded", "failed", "cancelled") and s
        ),
        timeout,
        "the multi-job deploy to finish",
    )
    return {
        "seconds": round(picked_up - killed, 3),
        "state": state,
        "timeline": bench.timeline(run_id, killed),
    }


def approval_hold(bench: Bench, timeout: float) -> dict[str, Any]:
    """Held 10 simulated minutes by required reviewers, then approved."""
    from datetime import timedelta

    from django.conf import settings
    from django.db import close_old_connections
    from django.utils import timezone

    from controlplane.github import reset_gateway
    from deploys import engine
    from deploys.models import DeployEvent, DeployRun

    # This process steps the engine too, on the jumped clock: same GitHub as the stack.
    settings.GITHUB_API_URL = bench.stack.sim_url
    settings.GITHUB_TOKEN = bench.stack.env["GITHUB_TOKEN"]
    reset_gateway()

    # The shipped workflow, whose deploy job declares the environment; the control
    # plane's GitHub user (the simulator's deploy-bot) is the required reviewer.
    workflow = Path(__file__).parent.parent / "deploys" / "workflows" / "deploy.yml"
    bench.stack.sim(
        "PUT",
        f"/_sim/repos/{REPOSITORY}/workflows/deploy.yml",
        {"yaml": workflow.read_text()},
    )
    call(
        f"{bench.stack.sim_url}/repos/{REPOSITORY}/environments/failover-approval",
        "PUT",
        {"reviewers": [{"type": "User", "id": 9_000_001}]},
        {"Authorization": "token bench-token"},
    )
    run_id, sent = bench.request("approval")

    def kinds() -> list[str]:
        close_old_connections()
        return list(
            DeployEvent.objects.filter(run_id=run_id).values_list("kind", flat=True)
        )

    wait_until(lambda: "approval_waiting" in kinds(), timeout, "the deploy held")
    offset = timedelta()
    for _ in range(20):  # ten minutes of simulated time, 30 s a step
        offset += timedelta(seconds=30)
        engine.advance(run_id, now=timezone.now() + offset)
    call(
        f"{bench.stack.web_url}/api/v1/deploys/{run_id}/review/",
        "POST",
        {"state": "approved", "comment": "bench"},
        {"Authorization": f"Token {bench.token}"},
    )
    bench.seen(primary("approval"), ("in_progress",), timeout)
    close_old_connections()
    run = DeployRun.objects.get(pk=run_id)
    return {
        "seconds": round(time.time() - sent, 3),
        "output": {
            "approval_hold_failovers": kinds().count("failover"),
            "approval_hold_dispatches": run.attempts.exclude(
                dispatched_at=None
            ).count(),
        },
        "timeline": bench.timeline(run_id, sent),
    }


@dataclass(frozen=True)
class Scenario:
    """One way for a deploy to meet trouble, measured on its own environment.

    ``run(bench, timeout)`` returns ``seconds`` (the output under ``key``) and
    ``timeline`` (printed), optionally ``output`` (more output keys of its own), and
    any other facts to print. It may reshape its environment or the simulator's
    workflow first; the runners and the environment are its alone.
    """

    name: str  # of its environment and runners
    key: str  # its output key: the scenario's seconds
    run: Callable[[Bench, float], dict[str, Any]]
    target: float | None = None  # seconds it must stay within


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("dead", "dispatch_seconds", dead_primary, 2.0),
    Scenario("midjob", "failover_seconds", primary_dies_mid_job, 20.0),
    Scenario("5xx", "dispatch_5xx_seconds", dispatch_answered_5xx, 10.0),
    Scenario("pickup", "pickup_timeout_failover_seconds", primary_never_picks_up),
    Scenario("multijob", "multijob_failover_seconds", primary_dies_during_build),
    # Last: it makes deploy.yml the shipped workflow, whose job declares environment.
    Scenario("approval", "approval_hold_seconds", approval_hold),
)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    var_dir, database_url, env = prepare("failover")
    with Stack(
        env, var_dir / "processes.log", webhooks=True, before_demo=add_runners
    ) as stack:
        setup_django(database_url)
        result = measure(stack, args.timeout)
        result["database"] = database_url.split(":", 1)[0]
    print(f"process logs: {var_dir / 'processes.log'}", flush=True)
    emit(result)


def measure(stack: Stack, timeout: float) -> dict[str, Any]:
    bench = Bench(stack)
    runners = [name(s.name) for s in SCENARIOS for name in (primary, secondary)]
    wait_until(
        lambda: all(bench.runner_state(name) == "healthy" for name in runners),
        timeout,
        "the bench runners to turn healthy",
    )
    from deploys.models import Environment

    pickup = Environment.objects.get(name="failover-pickup")
    output: dict[str, Any] = {}
    details: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        result = scenario.run(bench, timeout)
        details[scenario.name] = result
        output[scenario.key] = result["seconds"]
        output.update(result.get("output", {}))
        facts = ", ".join(
            f"{k} {v}"
            for k, v in result.items()
            if k not in ("seconds", "timeline", "output")
        )
        print(
            f"{scenario.name}: {result['seconds']} s"
            + (f" ({facts})" if facts else ""),
            flush=True,
        )
        for line in result["timeline"]:
            print(f"    {line}", flush=True)
    output.update(
        {
            "pickup_timeout": pickup.pickup_timeout,
            "busy_wait": pickup.busy_wait,
            "primary_unhealthy_after_death": details["midjob"][
                "primary_unhealthy_after"
            ],
            "targets": {s.key: s.target for s in SCENARIOS if s.target is not None},
        }
    )
    if details["multijob"]["state"] != "succeeded":
        output["multijob_failover_seconds"] = f"deploy {details['multijob']['state']}"
    return output


if __name__ == "__main__":
    main()
