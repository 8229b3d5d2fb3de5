"""Faster recovery: a dispatch answered 5xx is looked up by its token at once (and then
every second, conditionally), a run on a runner known dead is force-cancelled at
once, and a runner's fall wakes the deploys running on it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from deploys import engine, enqueue
from deploys.models import DeployAttempt, DeployEvent, DeployRun
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners import health
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
    simulated_env,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=7,
        pickup_delay=5,
        job_duration=20,
        cancel_delay=3,
        connect=True,
        max_retries=1,
    ),
]
LIST_RUNS = "GET /repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs"
TOKEN = "ghp_simulator_test_token"  # noqa: S105  (the sim fixture's)


@pytest.fixture
def clock() -> Clock:
    return Clock()


SLOW_POLL = 3600.0


@pytest.fixture(autouse=True)
def _slow_polling(settings: Any) -> None:
    # Polling as slow as webhook-first tracking may make it: whatever happens within
    # a second below happens without waiting for a poll.
    settings.DEPLOY_POLL_INTERVAL = SLOW_POLL


def follow(
    run: DeployRun, until: Callable[[DeployRun], bool], clock: Clock, settings: Any
) -> DeployRun:
    """Drive the run with GitHub polled at once (no webhooks reach these tests, and
    webhook-first tracking learns of the jobs only by them or a poll), then make
    polling slow again."""
    settings.DEPLOY_POLL_INTERVAL = 0.1
    try:
        return drive(run, until, clock)
    finally:
        settings.DEPLOY_POLL_INTERVAL = SLOW_POLL


def gated(sre: User, sim: Simulator, clock: Clock) -> DeployRun:
    """A deploy past the gate, its attempt created and not dispatched yet."""
    run = request_deploy(sre, simulated_env(sim)).run
    engine.STEPS[DeployRun.State.QUEUED](run, clock())
    run.refresh_from_db()
    engine.STEPS[DeployRun.State.GATING](run, clock())
    run.refresh_from_db()
    assert run.state == DeployRun.State.DISPATCHING
    return run


def test_dispatch_answered_5xx_is_found_by_its_token_at_once_without_a_second_dispatch(
    sim: Simulator, clock: Clock, sre: User, settings: Any
) -> None:
    run = gated(sre, sim, clock)
    sim.set_faults(dispatch_errors_after_create=1)

    engine.advance(run.pk, now=clock())

    run.refresh_from_db()
    # At the simulator's pace the job may even have finished within that advance.
    assert run.state in (DeployRun.State.RUNNING, DeployRun.State.SUCCEEDED)
    [attempt] = attempts(run)
    [github_run] = sim.state.runs(REPO)
    assert attempt.github_run_id == github_run.id
    assert attempt.token in github_run.display_title
    assert attempt.dispatched_at == attempt.dispatch_claimed_at
    order = kinds(run)
    assert order[order.index("gate_passed") + 1 :][:2] == [
        "dispatch_retry",
        "dispatch_recovered",
    ]
    assert "dispatched" not in order
    assert sim.state.request_count(DISPATCH) == 1
    assert sim.state.request_count(LIST_RUNS) == 1
    run = follow(run, final, clock, settings)
    assert run.state == DeployRun.State.SUCCEEDED
    assert sim.state.request_count(DISPATCH) == 1


def test_a_lost_dispatch_is_looked_up_every_second_and_unchanged_lists_cost_nothing(
    sim: Simulator, clock: Clock, sre: User, settings: Any
) -> None:
    settings.DEPLOY_DISPATCH_LOOKUP_GRACE = 60.0
    run = gated(sre, sim, clock)
    # GitHub answers 5xx and, this time, never created the run.
    sim.set_faults(error_rate=1.0)
    engine.advance(run.pk, now=clock())
    sim.clear_faults()
    run.refresh_from_db()
    assert run.state == DeployRun.State.DISPATCHING
    claimed = run.attempts.get().dispatch_claimed_at
    assert claimed is not None
    assert run.next_check_at == claimed + timedelta(seconds=1)

    clock.jump(1)
    engine.advance(run.pk, now=clock())  # a full answer: no run yet, and an ETag
    spent = sim.state.limits.budget(TOKEN)[2]
    clock.jump(1)
    engine.advance(run.pk, now=clock())  # 304: still nothing, and free

    run.refresh_from_db()
    assert run.state == DeployRun.State.DISPATCHING
    assert sim.state.limits.budget(TOKEN)[2] == spent
    assert sim.state.request_count(LIST_RUNS) >= 3
    assert run.next_check_at is not None
    assert run.next_check_at - clock() <= timedelta(seconds=1)

    clock.jump(60)  # past the grace: the dispatch never arrived; a new attempt
    run = follow(run, final, clock, settings)
    assert run.state == DeployRun.State.SUCCEEDED
    first, second = attempts(run)
    assert first.failover_reason == DeployAttempt.FailoverReason.DISPATCH_LOST
    assert second.token != first.token
    assert len(sim.state.runs(REPO)) == 1


def test_a_run_on_a_runner_offline_in_github_is_force_cancelled_at_once(
    sim: Simulator, clock: Clock, sre: User, settings: Any
) -> None:
    sim.configure(job_duration=3600)
    run = request_deploy(sre, simulated_env(sim)).run
    run = follow(
        run, lambda r: attempts(r)[0].picked_up_at is not None, clock, settings
    )
    sim.configure(job_duration=20)
    sim.kill(PRIMARY)
    # GitHub lists the runner offline; the heartbeat has not told yet.
    Runner.objects.filter(name=PRIMARY).update(
        github_status="offline", github_seen_at=timezone.now()
    )
    assert run.cancel(sre, "wrong ref")

    engine.advance(run.pk, now=clock())

    [attempt] = attempts(run)
    assert attempt.state == DeployAttempt.State.CANCELLED
    assert sim.state.get_run(REPO, github_id(run)).conclusion == "cancelled"
    forced = run.events.get(kind=DeployEvent.Kind.FORCE_CANCEL_SENT)
    assert forced.message.endswith(f"at once: {PRIMARY} is offline in GitHub")
    assert sim.state.request_count(CANCEL) == 0
    assert sim.state.request_count(FORCE_CANCEL) == 1


def test_a_runner_that_may_still_answer_gets_a_plain_cancel_first(
    sim: Simulator, clock: Clock, sre: User, settings: Any
) -> None:
    settings.DEPLOY_FORCE_CANCEL_AFTER = 5.0
    sim.configure(job_duration=3600)
    run = request_deploy(sre, simulated_env(sim)).run
    run = follow(
        run, lambda r: attempts(r)[0].picked_up_at is not None, clock, settings
    )
    # The job lost contact with GitHub; the healthy runner cannot stop it.
    [job] = [j for j in sim.state.jobs() if j.runner_name == PRIMARY]
    sim.lose_job(job.id)
    assert run.cancel(sre, "wrong ref")

    engine.advance(run.pk, now=clock())
    assert sim.state.request_count(CANCEL) == 1
    assert sim.state.request_count(FORCE_CANCEL) == 0
    clock.jump(6)
    engine.advance(run.pk, now=clock())

    assert attempts(run)[0].state == DeployAttempt.State.CANCELLED
    assert sim.state.request_count(FORCE_CANCEL) == 1
    order = kinds(run)
    assert order.index("cancel_sent") < order.index("force_cancel_sent")


def test_a_runner_falling_in_the_sweep_wakes_the_deploy_running_on_it(
    sim: Simulator,
    clock: Clock,
    sre: User,
    monkeypatch: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sim.configure(job_duration=3600)
    run = request_deploy(sre, simulated_env(sim)).run
    run = follow(
        run, lambda r: attempts(r)[0].picked_up_at is not None, clock, settings
    )
    woken: list[int] = []
    monkeypatch.setattr(enqueue, "advance", woken.append)
    now = timezone.now()
    # Both runners heartbeat on time, then the primary's host dies.
    fresh = now + timedelta(seconds=settings.HEARTBEAT_STALE_AFTER)
    Runner.objects.update(last_heartbeat_at=now, heartbeat_deadline=fresh)
    Runner.objects.filter(name=PRIMARY).update(
        last_heartbeat_at=now - timedelta(seconds=60),
        heartbeat_deadline=now - timedelta(seconds=30),
    )

    with django_capture_on_commit_callbacks(execute=True):
        for step in range(settings.HEALTH_FALL_AFTER):
            health.sweep(now + timedelta(seconds=step))

    assert Runner.objects.get(name=PRIMARY).state == State.UNHEALTHY
    assert Runner.objects.get(name=SECONDARY).state == State.HEALTHY
    assert woken == [run.pk]
    run.refresh_from_db()
    assert run.next_check_at == now + timedelta(seconds=settings.HEALTH_FALL_AFTER - 1)
