"""Deploys through a real Celery worker and beat, the simulator standing in for GitHub.

The request enqueues the first advance; the reconciler beat task drives the rest
(polling GitHub, pickup deadlines). A worker SIGKILLed after it dispatched loses
nothing: the restarted worker finishes the deploy and nothing is dispatched twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from githubsim import Simulator
from tests.conftest import manage_shell
from tests.processes import start, stop

DISPATCH = "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"
WAIT_SECONDS = 90

SETUP = """
from runners.models import Runner
from deploys.models import DeployRun, Environment, WorkflowJob
from django_celery_beat.models import PeriodicTask
# The tests of this module share one database, and each test's simulator numbers its
# runs from the same first id: the jobs an earlier test recorded would read as this
# test's run. GitHub's run ids are unique; start each test from none.
WorkflowJob.objects.all().delete()
DeployRun.objects.all().delete()
# Only the deploy schedules: no heartbeats arrive here, so the health sweep must
# not demote the runners the test declares healthy.
PeriodicTask.objects.exclude(task__startswith="deploys.").update(enabled=False)
runners = [
    Runner.objects.get_or_create(name=name, defaults={"state": "healthy", "reason": ""})[0]
    for name in ("prod-primary-1", "prod-secondary-1")
]
env, _ = Environment.objects.get_or_create(name="production", repository="acme/deploy")
env.set_pool(runners)
"""

REQUEST = """
from django.contrib.auth.models import User
from deploys.triggers import request_deploy
user, _ = User.objects.get_or_create(username="deploy-bot")
print(request_deploy(user, "production", "main").run.pk)
"""

READ = """
import json
from deploys.models import DeployRun
run = DeployRun.objects.get(pk={pk})
print(json.dumps({{
    "state": run.state,
    "attempts": [
        [a.runner.name, a.state, a.failover_reason]
        for a in run.attempts.order_by("number")
    ],
    "events": list(run.events.order_by("pk").values_list("kind", flat=True)),
}}))
"""


# The job lasts 30 real seconds.
pytestmark = pytest.mark.sim(
    time_scale=60,
    seed=5,
    pickup_delay=3,
    job_duration=1800,
    add_runners={"prod-primary-1": ["production"], "prod-secondary-1": ["production"]},
)


@pytest.fixture
def deploy_env(process_env: dict[str, str], sim: Simulator) -> dict[str, str]:
    env = {
        **process_env,
        "GITHUB_API_URL": sim.url,
        "GITHUB_TOKEN": "ghp_worker_test",
        "GITHUB_REPOSITORY": "acme/deploy",
        "DEPLOY_POLL_INTERVAL": "0.5",
    }
    manage_shell(env, SETUP)
    return env


def worker(env: dict[str, str], tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    return start(
        env,
        "worker",
        "-Q",
        "deploys",
        "--pool",
        "solo",
        "--hostname",
        f"{name}-{tmp_path.name}@%h",
        "--without-mingle",
        "--without-gossip",
        log=tmp_path / f"{name}.log",
    )


def beat(env: dict[str, str], tmp_path: Path) -> subprocess.Popen[bytes]:
    return start(
        env,
        "beat",
        "--pidfile",
        "",
        "--schedule",
        str(tmp_path / "beat-schedule"),
        "--max-interval",
        "1",
        log=tmp_path / "beat.log",
    )


def read(env: dict[str, str], pk: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(manage_shell(env, READ.format(pk=pk)))
    return data


def wait_for(env: dict[str, str], pk: int, states: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        run = read(env, pk)
        if run["state"] in states or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


def logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in tmp_path.glob("*.log"))


@pytest.mark.slow
def test_worker_and_beat_carry_a_deploy_to_success(
    deploy_env: dict[str, str], sim: Simulator, tmp_path: Path
) -> None:
    processes = [worker(deploy_env, tmp_path, "w1"), beat(deploy_env, tmp_path)]
    try:
        pk = int(manage_shell(deploy_env, REQUEST))
        run = wait_for(deploy_env, pk, ("succeeded", "failed", "cancelled"))
    finally:
        exits = [stop(p, tmp_path) for p in processes]

    assert run["state"] == "succeeded", (run, logs(tmp_path))
    assert run["attempts"] == [["prod-primary-1", "succeeded", ""]]
    assert sim.state.request_count(DISPATCH) == 1
    assert exits == [0, 0], logs(tmp_path)


# Ten simulated hours: the job cannot end while the first worker is killed and the
# run read back, however loaded the machine; the test then jumps the simulator's
# clock past the job's end.
LONG_JOB = 36_000


@pytest.mark.slow
@pytest.mark.sim(
    time_scale=60,
    seed=5,
    pickup_delay=3,
    job_duration=LONG_JOB,
    add_runners={"prod-primary-1": ["production"], "prod-secondary-1": ["production"]},
)
def test_worker_killed_mid_deploy_loses_nothing_and_never_dispatches_twice(
    deploy_env: dict[str, str], sim: Simulator, tmp_path: Path
) -> None:
    first = worker(deploy_env, tmp_path, "w1")
    scheduler = beat(deploy_env, tmp_path)
    processes = [scheduler]
    try:
        pk = int(manage_shell(deploy_env, REQUEST))
        assert sim.wait_until(
            lambda: sim.state.request_count(DISPATCH) == 1, timeout=WAIT_SECONDS
        ), logs(tmp_path)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert read(deploy_env, pk)["state"] not in ("succeeded", "failed")
        processes.append(worker(deploy_env, tmp_path, "w2"))
        sim.state.clock.advance(LONG_JOB)
        run = wait_for(deploy_env, pk, ("succeeded", "failed", "cancelled"))
    finally:
        exits = [stop(p, tmp_path) for p in processes]

    assert run["state"] == "succeeded", (run, logs(tmp_path))
    assert len(run["attempts"]) == 1
    assert sim.state.request_count(DISPATCH) == 1
    assert exits == [0, 0], logs(tmp_path)
