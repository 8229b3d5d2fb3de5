"""The busy-aware gate: a preferred runner busy with another job is waited for up to
the environment's ``busy_wait``, then the next idle healthy runner takes the deploy.

The other job is a real run in the simulator (dispatched by hand, outside the control
plane), and the control plane learns of it the way it does in production: from the
simulator's ``workflow_job`` webhook payload posted to ``/github/webhook``.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.github import gateway
from deploys import engine, jobs
from deploys.models import DeployEvent, DeployRun, Environment
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners import sync
from runners.models import Runner
from tests.clients import sign
from tests.deploying import (
    DISPATCH,
    PRIMARY,
    REPO,
    SECONDARY,
    Clock,
    attempts,
    drive,
    final,
    simulated_env,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=5,
        pickup_delay=5,
        job_duration=20,
        cancel_delay=3,
        connect=True,
        max_retries=1,
    ),
]
SECRET = "busy-gate-secret"  # noqa: S105


@pytest.fixture(autouse=True)
def _secret(settings: Any) -> None:
    settings.GITHUB_WEBHOOK_SECRET = SECRET


@pytest.fixture
def clock() -> Clock:
    return Clock()


def deliver_job(sim: Simulator, job_id: int) -> None:
    """Post the simulator's ``workflow_job`` payload for the job as it is now."""
    job = sim.state.get_job(None, job_id)
    payload = {
        "action": job.status,
        "workflow_job": sim.state.job_json(sim.url, job),
        "repository": sim.state.repository_json(sim.url, REPO),
    }
    body = json.dumps(payload).encode()
    response = Client().post(
        "/github/webhook",
        body,
        content_type="application/json",
        headers={
            "X-GitHub-Event": "workflow_job",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body, SECRET),
        },
    )
    assert response.status_code == 202, response.content
    jobs.process_pending(timezone.now() + timedelta(minutes=5))


def outside_job(sim: Simulator, runner: str) -> int:
    """A long job started by hand on ``runner``; returns its id once it runs there
    and the control plane has its ``in_progress`` webhook."""
    sim.configure(job_duration=36000)
    gateway().dispatch_workflow(
        "deploy.yml", "main", {"runner": runner, "token": f"by-hand-{runner}"}
    )
    assert sim.wait_until(
        lambda: any(
            j.runner_name == runner and j.status == "in_progress"
            for j in sim.state.jobs()
        )
    )
    [job] = [j for j in sim.state.jobs() if j.runner_name == runner]
    sim.configure(job_duration=20)
    deliver_job(sim, job.id)
    return job.id


def gate_events(run: DeployRun, kind: str) -> list[DeployEvent]:
    return list(run.events.filter(kind=kind).order_by("created_at", "pk"))


def test_busy_primary_is_waited_for_then_the_next_idle_runner_takes_the_deploy(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, busy_wait=60)
    outside_job(sim, PRIMARY)
    # GitHub's quirk: its runner list reads busy=false in the middle of the job,
    # and the registry sync writes what it reads.
    sim.configure(busy_false_rate=1.0)
    sync.sync_fleet()
    primary_row = Runner.objects.get(name=PRIMARY)
    assert primary_row.github_busy is False
    assert primary_row.github_is_fresh(timezone.now())
    run = request_deploy(sre, env).run

    engine.advance(run.pk, now=clock())
    clock.jump(30)
    engine.advance(run.pk, now=clock())

    run.refresh_from_db()
    assert run.state == DeployRun.State.GATING
    assert attempts(run) == []
    [waiting] = gate_events(run, DeployEvent.Kind.GATE_WAITING)
    assert waiting.message.startswith(f"{PRIMARY} busy with another job for ")
    assert waiting.message.endswith("; waiting up to 60 s")
    primary, secondary = waiting.detail["considered"]
    assert primary["waiting"] is True
    assert primary["busy"].startswith("busy with another job (deploy #")
    assert "busy" not in secondary
    run.refresh_from_db()
    assert run.next_check_at is not None

    clock.jump(31)  # past busy_wait
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    [attempt] = attempts(run)
    assert attempt.runner.name == SECONDARY
    [passed] = gate_events(run, DeployEvent.Kind.GATE_PASSED)
    assert passed.message == (
        f"attempt 1 goes to {SECONDARY}: {PRIMARY} busy longer than busy_wait (60 s)"
    )
    primary, secondary = passed.detail["considered"]
    assert primary["passed_over"] == ["busy longer than busy_wait (60 s)"]
    assert secondary["chosen"] is True
    assert secondary["why"] == f"{PRIMARY} busy longer than busy_wait (60 s)"
    assert sim.state.request_count(DISPATCH) == 2  # the outside job and the deploy


def test_busy_primary_that_frees_up_within_busy_wait_gets_the_deploy(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, busy_wait=120)
    job_id = outside_job(sim, PRIMARY)
    run = request_deploy(sre, env).run
    engine.advance(run.pk, now=clock())
    run.refresh_from_db()
    assert run.state == DeployRun.State.GATING

    # The other job ends; its completed webhook arrives.
    gateway().cancel_run(sim.state.get_job(None, job_id).run_id)
    assert sim.wait_until(lambda: sim.state.get_job(None, job_id).status == "completed")
    deliver_job(sim, job_id)
    clock.jump(10)
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    [attempt] = attempts(run)
    assert attempt.runner.name == PRIMARY
    assert attempt.job_runner_name == PRIMARY
    [passed] = gate_events(run, DeployEvent.Kind.GATE_PASSED)
    assert passed.message == f"attempt 1 goes to {PRIMARY}"
    assert "why" not in passed.detail["considered"][0]


def test_busy_wait_zero_takes_the_next_idle_runner_at_once(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, busy_wait=0)
    outside_job(sim, PRIMARY)
    run = request_deploy(sre, env).run

    run = drive(run, lambda r: r.attempts.exists(), clock)

    assert attempts(run)[0].runner.name == SECONDARY
    assert gate_events(run, DeployEvent.Kind.GATE_WAITING) == []
    [passed] = gate_events(run, DeployEvent.Kind.GATE_PASSED)
    assert passed.message.endswith(
        f"{PRIMARY} busy with another job and busy_wait is 0"
    )


def test_every_runner_busy_dispatches_to_the_primary_after_busy_wait(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, busy_wait=30)
    outside_job(sim, PRIMARY)
    outside_job(sim, SECONDARY)
    run = request_deploy(sre, env).run
    engine.advance(run.pk, now=clock())
    clock.jump(31)

    run = drive(run, lambda r: r.attempts.exists(), clock)

    # GitHub queues the job for the primary; the pickup timeout still guards it.
    assert attempts(run)[0].runner.name == PRIMARY
    [passed] = gate_events(run, DeployEvent.Kind.GATE_PASSED)
    assert "every eligible runner is busy with another job" in passed.message
    considered = passed.detail["considered"]
    assert [c["runner"] for c in considered if "busy" in c] == [PRIMARY, SECONDARY]


def test_github_list_busy_counts_until_a_webhook_tells_the_job_ended(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    """A job no webhook of ours tells of (another repository's) keeps the runner
    busy as GitHub's list says; a completed job seen after that reading does not."""
    env = simulated_env(sim, busy_wait=60)
    seen = timezone.now()
    Runner.objects.filter(name=PRIMARY).update(github_busy=True, github_seen_at=seen)
    run = request_deploy(sre, env).run
    engine.advance(run.pk, now=clock())
    [waiting] = gate_events(run, DeployEvent.Kind.GATE_WAITING)
    assert waiting.message == (
        f"{PRIMARY} busy with another job (GitHub's runner list); waiting up to 60 s"
    )

    job_id = outside_job(sim, PRIMARY)
    gateway().cancel_run(sim.state.get_job(None, job_id).run_id)
    assert sim.wait_until(lambda: sim.state.get_job(None, job_id).status == "completed")
    deliver_job(sim, job_id)
    # The completed webhook clears the flag; a lagging sync reading sets it again.
    Runner.objects.filter(name=PRIMARY).update(github_busy=True, github_seen_at=seen)
    run = drive(run, lambda r: r.attempts.exists(), clock)

    assert attempts(run)[0].runner.name == PRIMARY


def pool_of(sim: Simulator, size: int) -> Environment:
    names = tuple(f"busy-{size}-{i}" for i in range(size))
    env = simulated_env(sim, names, name=f"busy-{size}", busy_wait=0)
    for name in names[:-1]:
        outside_job(sim, name)
    return env


def test_the_gate_judges_a_whole_pool_busy_in_constant_queries(
    sim: Simulator, sre: User
) -> None:
    runs = [request_deploy(sre, pool_of(sim, size)).run for size in (2, 6)]
    now = timezone.now()

    counts = []
    for run in runs:
        run = DeployRun.objects.select_related("environment").get(pk=run.pk)
        with CaptureQueriesContext(connection) as queries:
            decision = engine.decide(run, now)
        counts.append(len(queries))
        # Every runner but the last is busy: the last one, idle, is taken.
        assert decision.runner is not None
        assert decision.runner.name == run.environment.pool()[-1].runner.name

    # The pool, the run's attempts and one query for every runner's newest job.
    assert counts == [3, 3]
