"""The deploy gate and rotation schedules: a deploy waits while a secret a schedule
says the environment requires is missing in GitHub, and, where the environment
asks for it, while one is overdue; the gate event names the secret."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from deploys import engine
from deploys.models import DeployRun, Environment
from deploys.triggers import request_deploy
from githubsim import Simulator, repository_scope
from rotations import domain
from rotations.models import SecretRotationSchedule
from runners.models import State
from tests.factories import make_env, make_runner

REPO = "acme/deploy"
DISPATCH = "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=3,
        pickup_delay=5,
        job_duration=20,
        connect=True,
        max_retries=0,
    ),
]


def gated_env(sim: Simulator, **kw: Any) -> Environment:
    """Production on one healthy runner the simulator knows, a 60 s gate timeout."""
    sim.add_runner("prod-primary-1", ["production"])
    runner = make_runner("prod-primary-1", state=State.HEALTHY)
    return make_env("production", runner, repository=REPO, gate_timeout=60, **kw)


def require(env: Environment, name: str, days_ago: float) -> SecretRotationSchedule:
    now = timezone.now()
    schedule = SecretRotationSchedule(
        name=name,
        last_rotated_at=now - timedelta(days=days_ago),
        last_checked_at=now,
        present=True,
    )
    schedule.save()
    schedule.required_by.add(env)
    return schedule


def passed_the_gate(run: DeployRun) -> bool:
    # The simulator runs fast: the deploy may already have finished, so look for
    # the gate's decision rather than a state.
    return run.events.filter(kind="gate_passed").exists()


def gate(run: DeployRun, seconds: float = 0) -> DeployRun:
    engine.advance(run.pk, now=timezone.now() + timedelta(seconds=seconds))
    run.refresh_from_db()
    return run


def test_missing_scheduled_secret_holds_the_deploy_and_is_named(
    sim: Simulator, sre: User
) -> None:
    env = gated_env(sim)
    require(env, "DEPLOY_KEY", days_ago=1)

    run = gate(request_deploy(sre, env).run)

    assert run.state == DeployRun.State.GATING
    waiting = run.events.get(kind="gate_waiting")
    assert waiting.detail == {"missing_secrets": ["DEPLOY_KEY"]}
    assert sim.state.request_count(DISPATCH) == 0

    sim.state.set_secret(repository_scope(REPO), "DEPLOY_KEY", "present-now")
    run = gate(run, 5)
    assert passed_the_gate(run)


def test_missing_scheduled_secret_fails_the_deploy_after_the_gate_timeout(
    sim: Simulator, sre: User
) -> None:
    env = gated_env(sim)
    require(env, "DEPLOY_KEY", days_ago=1)
    run = gate(request_deploy(sre, env).run)

    run = gate(run, 61)

    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.MISSING_SECRETS
    assert "DEPLOY_KEY" in run.message


def test_overdue_secret_holds_the_deploy_when_the_environment_asks(
    sim: Simulator, sre: User, admin_user: User
) -> None:
    env = gated_env(sim, block_on_overdue_secrets=True)
    sim.state.set_secret(repository_scope(REPO), "DEPLOY_KEY", "old-value")
    schedule = require(env, "DEPLOY_KEY", days_ago=91)

    run = gate(request_deploy(sre, env).run)

    assert run.state == DeployRun.State.GATING
    waiting = run.events.get(kind="gate_waiting")
    assert waiting.detail == {"overdue_secrets": ["DEPLOY_KEY"]}

    domain.rotate(schedule, "fresh-value", admin_user)
    run = gate(run, 5)
    assert passed_the_gate(run)


def test_overdue_secret_does_not_hold_an_environment_that_does_not_ask(
    sim: Simulator, sre: User
) -> None:
    env = gated_env(sim)
    sim.state.set_secret(repository_scope(REPO), "DEPLOY_KEY", "old-value")
    require(env, "DEPLOY_KEY", days_ago=400)

    run = gate(request_deploy(sre, env).run)

    assert passed_the_gate(run)
    assert not run.events.filter(kind="gate_waiting").exists()


def test_secret_required_by_another_environment_does_not_hold_this_one(
    sim: Simulator, sre: User
) -> None:
    env = gated_env(sim)
    staging = Environment.objects.create(name="staging", repository=REPO)
    require(staging, "STAGING_ONLY", days_ago=1)

    run = gate(request_deploy(sre, env).run)

    assert passed_the_gate(run)
