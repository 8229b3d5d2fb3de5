"""The deploy engine tests' clock, pool and drivers, shared by the tests that run
deploys against the simulator."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import OperationalError
from django.utils import timezone

from deploys import engine
from deploys.models import DeployAttempt, DeployRun, Environment
from githubsim import Simulator
from runners.models import Reason, Runner, State
from tests.factories import make_env, pool_runner

REPO = "acme/deploy"
PRIMARY = "prod-primary-1"
SECONDARY = "prod-secondary-1"
DISPATCH = "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"
CANCEL = "POST /repos/{owner}/{repo}/actions/runs/{run_id}/cancel"
FORCE_CANCEL = "POST /repos/{owner}/{repo}/actions/runs/{run_id}/force-cancel"


class Clock:
    """The control plane's "now" for a test: real time plus the jumps made so far."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return timezone.now() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def simulated_env(
    sim: Simulator, names: tuple[str, ...] = (PRIMARY, SECONDARY), **kw: Any
) -> Environment:
    """Production deploying ``deploy.yml`` at ``main`` on healthy runners ``names``,
    each registered with the simulator too."""
    runners = []
    for name in names:
        sim.add_runner(name, ["production"])
        runners.append(pool_runner(name))
    options: dict[str, Any] = {
        "name": "production",
        "repository": REPO,
        "workflow_file": "deploy.yml",
        "default_ref": "main",
    }
    options.update(kw)
    return make_env(options.pop("name"), *runners, **options)


def mark(name: str, state: str) -> None:
    """What the health sweep would write when the runner's signals change."""
    reason = "" if state == State.HEALTHY else Reason.HEARTBEAT_STALE
    Runner.objects.filter(name=name).update(state=state, reason=reason)


def drive(
    run: DeployRun,
    until: Callable[[DeployRun], bool],
    clock: Clock,
    *,
    timeout: float = 10.0,
) -> DeployRun:
    """Advance the run (as tasks and the reconciler would) until ``until`` holds."""
    give_up = time.monotonic() + timeout
    while True:
        try:
            engine.advance(run.pk, now=clock())
        except OperationalError as exc:
            # The tests' in-memory SQLite shares one cache between the test and a
            # live server's threads: a page polling meanwhile holds a table lock,
            # which SQLite reports at once instead of waiting. Try again.
            if "database table is locked" not in str(exc):
                raise
        run.refresh_from_db()
        if until(run):
            return run
        if time.monotonic() > give_up:
            kinds = list(run.events.values_list("kind", "message"))
            raise AssertionError(f"run stuck in {run.state}: {kinds}")
        time.sleep(0.01)


def final(run: DeployRun) -> bool:
    return run.is_final


def kinds(run: DeployRun) -> list[str]:
    return list(run.events.order_by("created_at", "pk").values_list("kind", flat=True))


def attempts(run: DeployRun) -> list[DeployAttempt]:
    return list(run.attempts.select_related("runner").order_by("number"))


def github_id(run: DeployRun, number: int = 1) -> int:
    """The GitHub run id of the run's attempt ``number``."""
    value = run.attempts.get(number=number).github_run_id
    assert value is not None
    return value
