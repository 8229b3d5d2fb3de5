"""The deploy state machine end to end: the real gateway against the GitHub simulator.

Time: the simulator runs at 600 simulated seconds per real second, so its pickup
delays and job durations pass in milliseconds. The control plane's own deadlines
(pickup timeout, gate timeout, dispatch lookup grace) are crossed by handing
``advance`` a clock that a test moves forward (``Clock.jump``).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.github import gateway
from deploys import engine
from deploys.models import (
    DeployAttempt,
    DeployEvent,
    DeployRun,
    WebhookDelivery,
)
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners.models import Runner, State
from tests.deploying import (
    CANCEL,
    DISPATCH,
    FORCE_CANCEL,
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


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_happy_path_deploys_on_the_primary(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env, "main", idempotency_key="k1").run

    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    [attempt] = attempts(run)
    assert attempt.runner.name == PRIMARY
    assert attempt.state == DeployAttempt.State.SUCCEEDED
    assert attempt.job_runner_name == PRIMARY
    assert attempt.github_run_id is not None
    assert attempt.picked_up_at is not None and attempt.finished_at is not None
    assert attempt.conclusion == "success"
    assert kinds(run) == [
        "requested",
        "gating",
        "gate_passed",
        "dispatched",
        "picked_up",
        "succeeded",
    ]
    assert sim.state.request_count(DISPATCH) == 1
    dispatched = sim.state.get_run(REPO, github_id(run))
    assert dispatched.inputs == {
        "runner": PRIMARY,
        "token": attempt.token,
        "sha": sim.sha_of("main"),
        "environment": "production",
        "ticket": "",
    }
    assert run.sha == dispatched.head_sha == sim.sha_of("main")
    assert attempt.token in dispatched.display_title
    assert run.next_check_at is None


def test_unhealthy_primary_sends_the_deploy_to_the_secondary_with_the_reason(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim)
    mark(PRIMARY, State.UNHEALTHY)
    run = request_deploy(sre, env).run

    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    [attempt] = attempts(run)
    assert attempt.runner.name == SECONDARY
    assert attempt.job_runner_name == SECONDARY
    gate = run.events.get(kind=DeployEvent.Kind.GATE_PASSED)
    primary, secondary = gate.detail["considered"]
    assert primary["runner"] == PRIMARY
    assert primary["passed_over"] == ["unhealthy (heartbeat stale)"]
    assert secondary == {
        "runner": SECONDARY,
        "position": 1,
        "state": "healthy",
        "passed_over": [],
        "chosen": True,
    }


def test_drained_primary_is_passed_over_with_who_drained_it(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim)
    Runner.objects.get(name=PRIMARY).drain(sre, "kernel upgrade")
    run = request_deploy(sre, env).run

    run = drive(run, lambda r: r.attempts.exists(), clock)

    gate = run.events.get(kind=DeployEvent.Kind.GATE_PASSED)
    assert gate.detail["considered"][0]["passed_over"] == [
        "drained by sam-sre: kernel upgrade"
    ]
    assert attempts(run)[0].runner.name == SECONDARY


def test_primary_killed_mid_job_is_force_cancelled_at_once_then_fails_over(
    sim: Simulator, clock: Clock, sre: User, settings: Any
) -> None:
    settings.DEPLOY_FORCE_CANCEL_AFTER = 5.0
    # A long job, so the primary is still running it when its host dies.
    sim.configure(job_duration=3600)
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    run = drive(run, lambda r: attempts(r)[0].picked_up_at is not None, clock)
    sim.configure(job_duration=20)

    sim.kill(PRIMARY)
    mark(PRIMARY, State.UNHEALTHY)
    engine.advance(run.pk, now=clock())
    # The runner is known dead, so no plain cancel is sent and none is waited for:
    # one step force-cancels the old run and dispatches the next attempt.
    first, second = attempts(run)
    assert first.state == DeployAttempt.State.CANCELLED
    assert first.cancel_sent_at is None
    assert first.force_cancelled_at == first.cancel_requested_at
    assert sim.state.get_run(REPO, github_id(run, 1)).conclusion == "cancelled"
    assert second.runner.name == SECONDARY
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    first, second = attempts(run)
    assert first.runner.name == PRIMARY
    assert first.failover_reason == "runner_unhealthy"
    assert second.state == DeployAttempt.State.SUCCEEDED
    order = kinds(run)
    assert "cancel_sent" not in order
    assert order.index("failover") < order.index("force_cancel_sent")
    # The old run was stopped before the new attempt existed.
    assert order.index("force_cancel_sent") < len(order) - order[::-1].index(
        "gate_passed"
    )
    forced = run.events.get(kind=DeployEvent.Kind.FORCE_CANCEL_SENT)
    assert forced.message.endswith(f"at once: {PRIMARY} is unhealthy")
    old = sim.state.get_run(REPO, github_id(run, 1))
    new = sim.state.get_run(REPO, github_id(run, 2))
    assert old.updated_at <= new.created_at
    assert sim.state.request_count(CANCEL) == 0
    assert sim.state.request_count(FORCE_CANCEL) == 1
    assert sim.state.request_count(DISPATCH) == 2


def test_job_lost_by_its_runner_fails_over_as_an_infrastructure_failure(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    sim.configure(job_duration=3600, lease_timeout=60)
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    run = drive(run, lambda r: attempts(r)[0].picked_up_at is not None, clock)
    sim.configure(job_duration=20)

    # The host dies but the health signals have not noticed (the sweep lags):
    # GitHub itself fails the job when its lease expires.
    sim.kill(PRIMARY)
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    first, second = attempts(run)
    assert first.failover_reason == "infrastructure_failure"
    assert first.conclusion == "failure"
    assert first.state == DeployAttempt.State.FAILED
    assert second.runner.name == SECONDARY
    assert sim.state.request_count(CANCEL) == 0


def test_job_on_another_runner_is_cancelled_and_the_deploy_fails(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    # A runner that also carries the primary's label takes the job first.
    sim.add_runner("imposter", [PRIMARY])
    sim.configure(job_duration=3600)
    env = simulated_env(sim)
    run = request_deploy(sre, env).run

    run = drive(run, lambda r: r.is_final and r.next_check_at is None, clock)

    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.WRONG_RUNNER
    assert "ran on imposter, not on prod-primary-1" in run.message
    [attempt] = attempts(run)
    assert attempt.job_runner_name == "imposter"
    assert attempt.state == DeployAttempt.State.CANCELLED
    assert sim.state.request_count(CANCEL) == 1


def test_genuine_failure_fails_fast_without_failover(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    sim.set_outcome("failure")
    env = simulated_env(sim)
    run = request_deploy(sre, env).run

    run = drive(run, final, clock)

    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.DEPLOY_FAILED
    assert "Deploy" in run.message
    assert run.runbook_slug == "deploy-failed"
    [attempt] = attempts(run)
    assert attempt.state == DeployAttempt.State.FAILED
    assert attempt.failover_reason == ""
    assert sim.state.request_count(DISPATCH) == 1


def test_job_not_picked_up_fails_over_after_the_pickup_timeout(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, pickup_timeout=120)
    # Dead host, but its last heartbeat is still fresh: the gate trusts it.
    sim.kill(PRIMARY)
    run = request_deploy(sre, env).run
    run = drive(run, lambda r: r.state == DeployRun.State.RUNNING, clock)
    time.sleep(0.05)  # the simulator's pickup delay passes; nobody takes the job
    engine.advance(run.pk, now=clock())
    assert run.attempts.count() == 1

    clock.jump(121)
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    first, second = attempts(run)
    assert first.failover_reason == "pickup_timeout"
    assert first.picked_up_at is None
    assert second.runner.name == SECONDARY
    assert sim.state.get_run(REPO, github_id(run, 1)).conclusion == "cancelled"
    failover = run.events.get(kind="failover")
    assert failover.detail["reason"] == "pickup_timeout"
    assert "did not pick the job up within 120 s" in failover.message


def test_max_attempts_bounds_the_failovers(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, max_attempts=2, pickup_timeout=30)
    sim.kill(PRIMARY)
    sim.kill(SECONDARY)
    run = request_deploy(sre, env).run

    run = drive(run, lambda r: r.state == DeployRun.State.RUNNING, clock)
    clock.jump(31)
    run = drive(run, lambda r: r.attempts.count() == 2, clock)
    clock.jump(31)
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.MAX_ATTEMPTS
    assert [a.runner.name for a in attempts(run)] == [PRIMARY, SECONDARY]
    assert {a.failover_reason for a in attempts(run)} == {"pickup_timeout"}
    assert all(a.is_final for a in attempts(run))
    assert sim.state.request_count(DISPATCH) == 2


def test_no_healthy_runner_waits_for_the_gate_timeout_then_fails(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, gate_timeout=60)
    mark(PRIMARY, State.UNHEALTHY)
    mark(SECONDARY, State.UNKNOWN)
    run = request_deploy(sre, env).run

    engine.advance(run.pk, now=clock())
    engine.advance(run.pk, now=clock())
    run.refresh_from_db()
    assert run.state == DeployRun.State.GATING
    [waiting] = run.events.filter(kind="gate_waiting")
    assert [c["passed_over"] for c in waiting.detail["considered"]] == [
        ["unhealthy (heartbeat stale)"],
        ["unknown (heartbeat stale)"],
    ]
    clock.jump(61)
    engine.advance(run.pk, now=clock())

    run.refresh_from_db()
    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.NO_HEALTHY_RUNNER
    assert run.runbook_slug == "deploy-no-healthy-runner"
    assert run.attempts.count() == 0
    assert sim.state.request_count(DISPATCH) == 0


def test_missing_required_secret_holds_the_gate(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, gate_timeout=30, required_secrets=["DEPLOY_KEY"])
    run = request_deploy(sre, env).run

    engine.advance(run.pk, now=clock())
    run.refresh_from_db()
    assert run.state == DeployRun.State.GATING
    waiting = run.events.get(kind="gate_waiting")
    assert waiting.detail == {"missing_secrets": ["DEPLOY_KEY"]}

    from githubsim import environment_scope

    sim.state.set_secret(environment_scope(REPO, "production"), "DEPLOY_KEY", "x")
    run = drive(run, final, clock)
    assert run.state == DeployRun.State.SUCCEEDED


def test_crash_after_the_dispatch_was_sent_is_recovered_by_token(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    now = clock()
    engine.STEPS[DeployRun.State.QUEUED](run, now)
    run.refresh_from_db()
    engine.STEPS[DeployRun.State.GATING](run, now)
    [attempt] = attempts(run)
    # What a worker did before it was killed: claimed, sent, never recorded.
    DeployAttempt.objects.filter(pk=attempt.pk).update(dispatch_claimed_at=now)
    gateway().dispatch_workflow(
        "deploy.yml", "main", {"runner": PRIMARY, "token": attempt.token}
    )

    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    assert sim.state.request_count(DISPATCH) == 1
    [attempt] = attempts(run)
    assert attempt.github_run_id is not None
    assert "dispatch_recovered" in kinds(run)
    assert "dispatched" not in kinds(run)


def test_crash_after_the_claim_before_sending_never_dispatches_that_attempt(
    sim: Simulator, clock: Clock, sre: User, settings: Any
) -> None:
    settings.DEPLOY_DISPATCH_LOOKUP_GRACE = 60.0
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    now = clock()
    engine.STEPS[DeployRun.State.QUEUED](run, now)
    run.refresh_from_db()
    engine.STEPS[DeployRun.State.GATING](run, now)
    DeployAttempt.objects.filter(run=run).update(dispatch_claimed_at=now)

    # Within the grace the run may still show up in GitHub's list: only look.
    engine.advance(run.pk, now=clock())
    run.refresh_from_db()
    assert run.state == DeployRun.State.DISPATCHING
    assert sim.state.request_count(DISPATCH) == 0
    clock.jump(61)
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    first, second = attempts(run)
    assert first.failover_reason == "dispatch_lost"
    assert first.github_run_id is None
    assert second.github_run_id is not None
    assert sim.state.request_count(DISPATCH) == 1


def test_a_dispatch_recorded_by_two_racing_workers_shows_once_on_the_timeline(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    now = clock()
    engine.STEPS[DeployRun.State.QUEUED](run, now)
    run.refresh_from_db()
    engine.STEPS[DeployRun.State.GATING](run, now)
    DeployAttempt.objects.filter(run=run).update(dispatch_claimed_at=now)
    sender = run.current_attempt()
    # A second worker (woken by a webhook or the reconciler) read the attempt
    # claimed but without a run id, while the first was still sending.
    late = run.current_attempt()
    assert sender is not None and late is not None

    engine.send_dispatch(run, sender, now)
    engine.recover_dispatch(run, late, now)

    assert sim.state.request_count(DISPATCH) == 1
    assert kinds(run).count("dispatched") == 1
    assert "dispatch_recovered" not in kinds(run)


def test_cancel_stops_the_github_run(sim: Simulator, clock: Clock, sre: User) -> None:
    sim.configure(job_duration=3600)
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    run = drive(run, lambda r: attempts(r)[0].picked_up_at is not None, clock)

    assert run.cancel(sre, "wrong ref")
    run = drive(run, lambda r: r.next_check_at is None, clock)

    assert run.state == DeployRun.State.CANCELLED
    [attempt] = attempts(run)
    assert attempt.state == DeployAttempt.State.CANCELLED
    assert sim.state.request_count(CANCEL) == 1
    sim.wait_until(
        lambda: sim.state.get_run(REPO, github_id(run)).status == "completed"
    )
    assert sim.state.get_run(REPO, github_id(run)).conclusion == "cancelled"
    assert not run.cancel(sre)  # already final: nothing happens


def test_queued_deploys_start_in_order_one_at_a_time(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    sim.configure(job_duration=3600)
    env = simulated_env(sim)
    for n in (1, 2, 3):
        sim.create_tag(f"release-{n}")
    first = request_deploy(sre, env, "release-1").run
    second = request_deploy(sre, env, "release-2").run
    third = request_deploy(sre, env, "release-3").run

    # The newest asks first: it must wait for the older ones.
    engine.advance(third.pk, now=clock())
    engine.advance(second.pk, now=clock())
    first = drive(first, lambda r: r.state == DeployRun.State.RUNNING, clock)
    for run in (second, third):
        run.refresh_from_db()
        assert run.state == DeployRun.State.QUEUED
    engine.advance(third.pk, now=clock())
    third.refresh_from_db()
    assert third.state == DeployRun.State.QUEUED

    sim.configure(job_duration=20)
    sim.clock.advance(3600)  # the first deploy's long job ends
    drive(first, final, clock)
    second = drive(second, final, clock)
    third = drive(third, final, clock)
    assert second.started_at is not None and first.finished_at is not None
    assert second.started_at >= first.finished_at
    assert third.started_at is not None and second.finished_at is not None
    assert third.started_at >= second.finished_at


def test_reconciler_enqueues_due_runs_once_per_lease(
    sim: Simulator, clock: Clock, sre: User, django_capture_on_commit_callbacks: Any
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    later = clock() + timedelta(seconds=10)

    assert engine.reconcile(later) == 1
    assert engine.reconcile(later) == 0  # leased to the worker it was sent to
    run.refresh_from_db()
    assert run.next_check_at is not None and run.next_check_at > later


def test_webhook_for_a_deploy_run_wakes_the_deploy(
    sim: Simulator, clock: Clock, sre: User, django_capture_on_commit_callbacks: Any
) -> None:
    from deploys import jobs

    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    run = drive(run, lambda r: r.attempts.filter(github_run_id__gt=0).exists(), clock)
    github_run_id = github_id(run)
    payload: dict[str, Any] = {
        "action": "in_progress",
        "workflow_job": {
            "id": 5,
            "run_id": github_run_id,
            "name": "deploy",
            "status": "in_progress",
            "labels": ["self-hosted", PRIMARY],
            "runner_name": PRIMARY,
            "created_at": "2026-11-26T10:00:00Z",
            "started_at": "2026-11-26T10:00:00Z",
        },
    }
    mine = WebhookDelivery.objects.create(
        delivery_id="d-1", event="workflow_job", payload=payload
    )
    job = dict(payload["workflow_job"], id=6, run_id=1)
    other = WebhookDelivery.objects.create(
        delivery_id="d-2", event="workflow_job", payload={"workflow_job": job}
    )

    with django_capture_on_commit_callbacks() as woken:
        jobs.process_delivery(mine.pk)
    with django_capture_on_commit_callbacks() as not_woken:
        jobs.process_delivery(other.pk)

    assert len(woken) == 1
    assert not_woken == []
