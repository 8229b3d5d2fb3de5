"""Rows the tests build again and again: runners, environments, rotation schedules.

Each factory fills only what a test would otherwise repeat; everything else is the
model's default, and keyword arguments set any field.
"""

from __future__ import annotations

from typing import Any

from deploys.models import Environment
from rotations.models import SecretRotationSchedule
from runners.models import Reason, Runner, State

REPOSITORY = "acme/deploy"


def make_runner(name: str | None = None, **kw: Any) -> Runner:
    """A runner in the model's default state, named ``runner-00001`` and onwards."""
    if name is None:
        name = f"runner-{Runner.objects.count() + 1:05d}"
    return Runner.objects.create(name=name, **kw)


def runner_with_token(name: str = "linux-prod-1", **kw: Any) -> tuple[Runner, str]:
    """A runner and the heartbeat token an admin issued it."""
    runner = make_runner(name, **kw)
    return runner, runner.issue_heartbeat_token("ada-admin")


def pool_runner(name: str, state: str = State.HEALTHY, **kw: Any) -> Runner:
    """A runner the health sweep has judged: ``state`` with the reason it records."""
    reason = "" if state == State.HEALTHY else Reason.HEARTBEAT_STALE
    return Runner.objects.create(name=name, state=state, reason=reason, **kw)


def make_env(name: str = "production", *runners: Runner, **kw: Any) -> Environment:
    """An environment of ``REPOSITORY`` whose pool is ``runners`` (primary first)."""
    kw.setdefault("repository", REPOSITORY)
    env = Environment.objects.create(name=name, **kw)
    if runners:
        env.set_pool(list(runners))
    return env


def make_schedule(name: str = "DEPLOY_KEY", **kw: Any) -> SecretRotationSchedule:
    schedule = SecretRotationSchedule(name=name, **kw)
    schedule.save()
    return schedule
