"""Deploys of multi-job workflows (build → deploy on the pinned runner → smoke) end to
end: the real gateway against the GitHub simulator.

Time works as in test_deploy_engine: the simulator runs 600 times faster than real
time (``sim.clock.advance`` jumps it), the control plane's deadlines are crossed with
``Clock.jump``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from deploys import engine
from deploys.models import DeployAttempt, DeployEvent, DeployRun
from deploys.triggers import request_deploy
from githubsim import Simulator
from githubsim.workflows import BUILD_DEPLOY_SMOKE
from runners.models import State
from tests.deploying import (
    CANCEL,
    DISPATCH,
    PRIMARY,
    REPO,
    SECONDARY,
    Clock,
    attempts,
    drive,
    final,
    github_id,
    kinds,
    mark,
    simulated_env,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=11,
        pickup_delay=5,
        job_duration=20,
        cancel_delay=3,
        connect=True,
        max_retries=1,
    ),
]


SHIPPED_PIPELINE = (
    Path(__file__).parent.parent / "deploys" / "workflows" / "deploy-pipeline.yml"
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def pipeline(sim: Simulator, **jobs: dict[str, Any]) -> None:
    """The reference build → deploy → smoke workflow, with per-job changes."""
    specs = copy.deepcopy(BUILD_DEPLOY_SMOKE)
    for spec in specs:
        spec.update(jobs.get(spec["name"], {}))
    sim.set_workflow("deploy.yml", jobs=specs)


def sim_jobs(sim: Simulator, run: DeployRun, number: int = 1) -> dict[str, Any]:
    """The simulator's jobs of attempt ``number``'s GitHub run, by name."""
    github_run = sim.state.get_run(REPO, github_id(run, number))
    return {job.name: job for job in sim.state.run_jobs(github_run)}


def test_multijob_deploy_succeeds_with_the_build_on_a_hosted_runner(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    # The shipped reference pipeline, as a repository would hold it.
    sim.set_workflow("deploy.yml", yaml=SHIPPED_PIPELINE.read_text())
    env = simulated_env(sim)
    run = request_deploy(sre, env, "main", idempotency_key="k1").run

    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED, run.message
    [attempt] = attempts(run)
    assert attempt.job_runner_name == PRIMARY
    assert attempt.conclusion == "success"
    jobs = sim_jobs(sim, run)
    assert jobs["build"].runner_name.startswith("GitHub Actions ")
    assert jobs["deploy"].runner_name == PRIMARY
    assert jobs["smoke"].conclusion == "success"
    assert kinds(run) == [
        "requested",
        "gating",
        "gate_passed",
        "dispatched",
        "picked_up",
        "succeeded",
    ]
    assert sim.state.request_count(DISPATCH) == 1
    assert run.next_check_at is None


def test_a_build_longer_than_the_pickup_timeout_never_fails_over(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    pipeline(sim, build={"duration": 3000})
    env = simulated_env(sim, pickup_timeout=120)
    run = request_deploy(sre, env).run
    run = drive(run, lambda r: r.state == DeployRun.State.RUNNING, clock)
    assert sim.wait_until(lambda: sim_jobs(sim, run)["build"].status == "in_progress")

    clock.jump(600)
    engine.advance(run.pk, now=clock())

    run.refresh_from_db()
    assert run.state == DeployRun.State.RUNNING
    [attempt] = attempts(run)
    assert attempt.state == DeployAttempt.State.DISPATCHED
    assert attempt.job_blocked_at is not None
    assert not run.events.filter(kind=DeployEvent.Kind.FAILOVER).exists()

    sim.clock.advance(3000)
    run = drive(run, final, clock)
    assert run.state == DeployRun.State.SUCCEEDED
    assert [a.runner.name for a in attempts(run)] == [PRIMARY]
    picked = run.events.get(kind=DeployEvent.Kind.PICKED_UP)
    assert "s after it was queued" in picked.message
    # The pickup delay (5 s), not the build's 3000 s, by GitHub's clock.
    assert picked.detail["queued_seconds"] < 600
    assert sim.state.request_count(DISPATCH) == 1
    assert sim.state.request_count(CANCEL) == 0


def test_pickup_clock_starts_when_the_deploy_job_is_queued(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    pipeline(sim, build={"duration": 600})
    env = simulated_env(sim, pickup_timeout=120)
    # Dead host, but its last heartbeat is still fresh: the gate trusts it.
    sim.kill(PRIMARY)
    run = request_deploy(sre, env).run
    run = drive(run, lambda r: r.state == DeployRun.State.RUNNING, clock)
    assert sim.wait_until(lambda: "deploy" in sim_jobs(sim, run), timeout=10)

    # 200 s after the dispatch, but 600 s of it were the build: no failover yet.
    clock.jump(200)
    engine.advance(run.pk, now=clock())
    assert run.attempts.count() == 1
    assert not run.events.filter(kind=DeployEvent.Kind.FAILOVER).exists()

    clock.jump(600)
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    first, second = attempts(run)
    assert first.failover_reason == "pickup_timeout"
    assert second.runner.name == SECONDARY
    assert sim.state.get_run(REPO, github_id(run, 1)).conclusion == "cancelled"


def test_failing_build_fails_the_deploy_fast_naming_the_job_and_step(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    pipeline(sim, build={"outcome": "failure"})
    env = simulated_env(sim)
    run = request_deploy(sre, env).run

    run = drive(run, final, clock)

    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.DEPLOY_FAILED
    assert run.message == "job 'build' failed at step 'Build'"
    failed = run.events.get(kind=DeployEvent.Kind.FAILED)
    assert failed.detail == {
        "reason": "deploy_failed",
        "job": "build",
        "step": "Build",
    }
    [attempt] = attempts(run)
    assert attempt.state == DeployAttempt.State.FAILED
    assert attempt.failover_reason == ""
    assert attempt.picked_up_at is None
    assert sim.state.request_count(DISPATCH) == 1
    assert sim_jobs(sim, run)["deploy"].conclusion == "skipped"
    assert sim.state.runner(PRIMARY).busy is False


def test_failing_smoke_after_a_good_deploy_fails_the_deploy(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    # The build runs on a self-hosted build runner: expected, never wrong_runner.
    sim.add_runner("build-1", ["build"])
    pipeline(
        sim,
        build={"runs_on": ["self-hosted", "build"]},
        smoke={"outcome": "failure"},
    )
    env = simulated_env(sim)
    run = request_deploy(sre, env).run

    run = drive(run, final, clock)

    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.DEPLOY_FAILED
    assert run.message == (
        "job 'smoke' failed at step 'Smoke' after the deploy job succeeded on "
        f"{PRIMARY}"
    )
    [attempt] = attempts(run)
    assert attempt.job_runner_name == PRIMARY
    assert attempt.picked_up_at is not None
    assert attempt.state == DeployAttempt.State.FAILED
    assert sim_jobs(sim, run)["build"].runner_name == "build-1"
    assert sim.state.request_count(DISPATCH) == 1


def test_primary_unhealthy_while_the_build_runs_fails_over_at_once(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    pipeline(sim, build={"duration": 3000})
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    run = drive(run, lambda r: r.state == DeployRun.State.RUNNING, clock)
    assert sim.wait_until(lambda: sim_jobs(sim, run)["build"].status == "in_progress")
    # Until the engine has looked (a poll interval after the dispatch), it knows
    # only that the run is starting.
    run = drive(run, lambda r: r.attempts.get().polled_at is not None, clock)

    mark(PRIMARY, State.UNHEALTHY)
    run = drive(run, lambda r: r.attempts.count() == 2, clock)

    failover = run.events.get(kind=DeployEvent.Kind.FAILOVER)
    assert failover.detail["reason"] == "runner_unhealthy"
    assert "before picking the job up (the run: build in_progress)" in (
        failover.message
    )
    first = sim_jobs(sim, run, 1)
    assert first["build"].conclusion == "cancelled"
    assert first["deploy"].conclusion == "skipped"
    assert sim.state.runner(PRIMARY).busy is False
    sim.clock.advance(3000)
    run = drive(run, final, clock)
    assert run.state == DeployRun.State.SUCCEEDED
    assert attempts(run)[1].job_runner_name == SECONDARY


def test_pinned_job_lost_fails_over_as_an_infrastructure_failure(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    pipeline(sim, deploy={"duration": 3600})
    sim.configure(lease_timeout=60)
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    run = drive(run, lambda r: attempts(r)[0].picked_up_at is not None, clock)

    sim.kill(PRIMARY)
    pipeline(sim)
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    first, second = attempts(run)
    assert first.failover_reason == "infrastructure_failure"
    assert second.job_runner_name == SECONDARY
    assert sim_jobs(sim, run, 1)["smoke"].conclusion == "skipped"


def test_workflow_with_no_job_on_the_runner_fails_as_wrong_runner(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    sim.set_workflow(
        "deploy.yml", jobs=[{"name": "deploy", "runs_on": ["ubuntu-latest"]}]
    )
    env = simulated_env(sim)
    run = request_deploy(sre, env).run

    run = drive(run, final, clock)

    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.WRONG_RUNNER
    assert f"no job of the GitHub run ran on {PRIMARY}" in run.message
    assert sim.state.request_count(DISPATCH) == 1


def test_deploy_job_held_by_a_protection_rule_is_neither_late_nor_failed_over(
    sim: Simulator, clock: Clock, sre: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GitHub holds the deploy job as ``waiting`` (required reviewers): the seam the
    # simulator's environments hook.
    release = sim.state._release

    def hold(job: Any, now: float) -> None:
        release(job, now)
        if job.name == "deploy":
            job.status = "waiting"

    monkeypatch.setattr(sim.state, "_release", hold)
    pipeline(sim)
    env = simulated_env(sim, pickup_timeout=120)
    run = request_deploy(sre, env).run
    run = drive(run, lambda r: r.state == DeployRun.State.RUNNING, clock)
    assert sim.wait_until(lambda: "deploy" in sim_jobs(sim, run))

    clock.jump(3600)
    engine.advance(run.pk, now=clock())
    run.refresh_from_db()
    assert run.state == DeployRun.State.RUNNING
    assert not run.events.filter(kind=DeployEvent.Kind.FAILOVER).exists()
    held_until = attempts(run)[0].job_blocked_at
    assert held_until is not None

    with sim.state.lock:  # approved
        sim_jobs(sim, run)["deploy"].status = "queued"
    run = drive(run, final, clock)
    assert run.state == DeployRun.State.SUCCEEDED
    assert attempts(run)[0].job_runner_name == PRIMARY
    assert sim.state.request_count(DISPATCH) == 1
