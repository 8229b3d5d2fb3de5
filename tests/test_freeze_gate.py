"""The deploy gate and freeze windows: a deploy requested before a freeze began fails
when it reaches the gate during the freeze, without a dispatch; a deploy an admin
requested by breaking glass passes; one already dispatched or running goes on.

Time as in ``test_deploy_engine``: the simulator runs 600 times faster than real
time; the control plane's "now" is a ``Clock`` a test moves forward.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane import notifications
from controlplane.models import Notification
from deploys import engine
from deploys.models import DeployEvent, DeployRun, Environment, FreezeWindow
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners.models import Runner, State

# The engine tests' clock and helpers.
from tests.deploying import (
    DISPATCH,
    PRIMARY,
    SECONDARY,
    Clock,
    drive,
    final,
    kinds,
    simulated_env,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=5,
        pickup_delay=5,
        job_duration=20,
        connect=True,
        max_retries=1,
    ),
]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def freeze(env: Environment, starts: datetime, minutes: float = 60) -> FreezeWindow:
    return FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="year-end freeze",
        starts_at=starts,
        ends_at=starts + timedelta(minutes=minutes),
    )


def running(run: DeployRun) -> bool:
    return run.state == DeployRun.State.RUNNING


def test_a_deploy_queued_behind_another_fails_at_the_gate_once_frozen(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    sim.configure(job_duration=3600)
    env = simulated_env(sim)
    sim.create_tag("v1")
    sim.create_tag("v2")
    first = request_deploy(sre, env, "v1").run
    second = request_deploy(sre, env, "v2").run
    first = drive(first, running, clock)
    engine.advance(second.pk, now=clock())
    second.refresh_from_db()
    assert second.state == DeployRun.State.QUEUED
    window = freeze(env, clock())
    sim.configure(job_duration=20)
    sim.clock.advance(3600)

    # The running deploy is not touched by the freeze.
    first = drive(first, final, clock)
    assert first.state == DeployRun.State.SUCCEEDED
    second = drive(second, final, clock)

    assert second.state == DeployRun.State.FAILED
    assert second.reason == DeployRun.Reason.FROZEN
    assert second.runbook_slug == "deploy-frozen"
    assert "year-end freeze" in second.message
    assert second.attempts.count() == 0
    assert kinds(second) == ["requested", "gating", "failed"]
    failed = second.events.get(kind=DeployEvent.Kind.FAILED)
    assert failed.detail == {
        "reason": "frozen",
        "freeze": "year-end freeze",
        "window": window.pk,
        "schedule": window.schedule,
    }
    assert sim.state.request_count(DISPATCH) == 1


def test_a_deploy_waiting_at_the_gate_fails_when_the_freeze_begins(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, gate_timeout=600)
    Runner.objects.update(state=State.UNHEALTHY)
    run = request_deploy(sre, env).run
    engine.advance(run.pk, now=clock())
    run.refresh_from_db()
    assert run.state == DeployRun.State.GATING

    freeze(env, clock())
    Runner.objects.update(state=State.HEALTHY)
    run = drive(run, final, clock)

    assert run.reason == DeployRun.Reason.FROZEN
    assert sim.state.request_count(DISPATCH) == 0


def test_a_break_glass_deploy_passes_the_gate_during_the_freeze(
    sim: Simulator, clock: Clock, admin_user: User, sre: User
) -> None:
    sim.configure(job_duration=3600)
    env = simulated_env(sim)
    sim.create_tag("v1")
    sim.create_tag("v2")
    first = request_deploy(sre, env, "v1").run
    first = drive(first, running, clock)
    freeze(env, clock() - timedelta(minutes=1))
    sim.push("v1-hotfix")
    hotfix = request_deploy(
        admin_user, env, "v1-hotfix", break_glass_reason="CVE fix"
    ).run
    sim.configure(job_duration=20)
    sim.clock.advance(3600)

    drive(first, final, clock)
    hotfix = drive(hotfix, final, clock)

    assert hotfix.state == DeployRun.State.SUCCEEDED
    assert kinds(hotfix)[:3] == ["requested", "break_glass", "gating"]
    assert sim.state.request_count(DISPATCH) == 2


def test_a_dispatched_deploy_failing_over_during_the_freeze_goes_on(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, pickup_timeout=120)
    # A dead host whose last heartbeat is still fresh: the gate trusts it.
    sim.kill(PRIMARY)
    run = request_deploy(sre, env).run
    run = drive(run, running, clock)
    freeze(env, clock())

    clock.jump(121)
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    first, second = run.attempts.select_related("runner").order_by("number")
    assert first.failover_reason == "pickup_timeout"
    assert second.runner.name == SECONDARY
    assert sim.state.request_count(DISPATCH) == 2


def test_a_freeze_that_ended_lets_the_queued_deploy_go(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    sim.configure(job_duration=3600)
    env = simulated_env(sim)
    sim.create_tag("v1")
    sim.create_tag("v2")
    first = request_deploy(sre, env, "v1").run
    second = request_deploy(sre, env, "v2").run
    first = drive(first, running, clock)
    freeze(env, clock(), minutes=1)
    clock.jump(61)
    sim.configure(job_duration=20)
    sim.clock.advance(3600)

    drive(first, final, clock)
    second = drive(second, final, clock)

    assert second.state == DeployRun.State.SUCCEEDED
    assert sim.state.request_count(DISPATCH) == 2


def test_a_frozen_deploy_notifies_with_its_runbook(
    sim: Simulator, clock: Clock, sre: User, settings: Any
) -> None:
    settings.NOTIFY_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
    settings.NOTIFY_SLACK_WEBHOOK_URLS = []
    settings.NOTIFY_SCAN_GRACE = 0.0
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    freeze(env, clock())

    run = drive(run, final, clock)
    notifications.scan_events(clock() + timedelta(seconds=1))

    [sent] = Notification.objects.all()
    assert sent.kind == notifications.Kind.DEPLOY_FAILED
    assert sent.severity == Notification.Severity.WARNING
    assert sent.runbook.endswith("/runbooks/deploy-frozen/")
    assert sent.fields["reason"] == "frozen"
    assert "year-end freeze" in sent.message
