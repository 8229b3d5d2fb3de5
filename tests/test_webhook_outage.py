"""A control plane outage loses no deploy outcome: deliveries GitHub failed to make
while the web server was down are redelivered from the hook's delivery log.

Real processes: the simulator, gunicorn and a Celery worker. The deploy poll
interval is an hour, so nothing but webhooks can finish the deploys.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench._processes import free_port
from githubsim import Simulator
from tests.conftest import ROOT, manage_shell
from tests.processes import GUNICORN, start, stop

REPO = "acme/deploy"
SECRET = "outage-webhook-secret"  # noqa: S105
WAIT_SECONDS = 90
ENVIRONMENTS = {"production": "prod-1", "staging": "stage-1"}

SETUP = """
from django_celery_beat.models import PeriodicTask
from runners.models import Runner
from deploys.models import Environment
PeriodicTask.objects.update(enabled=False)
for env_name, runner_name in {environments!r}.items():
    runner, _ = Runner.objects.get_or_create(
        name=runner_name, defaults={{"state": "healthy", "reason": ""}}
    )
    env, _ = Environment.objects.get_or_create(name=env_name, repository="{repo}")
    env.set_pool([runner])
"""

REQUEST = """
from django.contrib.auth.models import User
from deploys.triggers import request_deploy
user, _ = User.objects.get_or_create(username="deploy-bot")
print(request_deploy(user, "{environment}", "main").run.pk)
"""

READ = """
import json
from deploys.models import DeployRun, WebhookDelivery
runs = DeployRun.objects.filter(pk__in={pks}).order_by("pk")
print(json.dumps({{
    "runs": [
        [r.state, list(r.events.order_by("pk").values_list("kind", flat=True))]
        for r in runs
    ],
    "guids": list(WebhookDelivery.objects.values_list("delivery_id", flat=True)),
}}))
"""

RECOVER = """
import json
from deploys import webhook_recovery
result = webhook_recovery.recover()
print(json.dumps([result.missed, result.redelivered, result.complete]))
"""


class Web:
    """gunicorn on a fixed port, stopped and started again like a restarted host."""

    def __init__(self, env: dict[str, str], port: int, log_dir: Path) -> None:
        self.env, self.port, self.log_dir = env, port, log_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_dir / "gunicorn.log"
        self.process = subprocess.Popen(
            [GUNICORN, "controlplane.wsgi", "--bind", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=self.env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


# 60 simulated seconds per real second: pickup 3 s and a 60 s job take ~1 s.
pytestmark = pytest.mark.sim(
    time_scale=60,
    seed=9,
    pickup_delay=3,
    job_duration=60,
    add_runners={runner: ["production"] for runner in ENVIRONMENTS.values()},
)


@pytest.fixture
def stack(
    process_env: dict[str, str], sim: Simulator, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Web]]:
    port = free_port()
    env = {
        **process_env,
        "GITHUB_API_URL": sim.url,
        "GITHUB_TOKEN": "ghp_outage_test",
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_ORGANIZATION": "",
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_WEBHOOK_HOOK_ID": "0",
        "SITE_URL": f"http://127.0.0.1:{port}",
        # Only webhooks can move a running deploy on within the test.
        "DEPLOY_POLL_INTERVAL": "3600",
    }
    manage_shell(env, SETUP.format(environments=ENVIRONMENTS, repo=REPO))
    web = Web(env, port, tmp_path)
    worker = start(
        env,
        "worker",
        "-Q",
        "deploys",
        "--pool",
        "solo",
        "--hostname",
        f"outage-{tmp_path.name}@%h",
        "--without-mingle",
        "--without-gossip",
        log=tmp_path / "worker.log",
    )
    try:
        web.start()
        sim.set_webhook(f"{web.url}/github/webhook", SECRET)
        yield env, web
    finally:
        web.stop()
        stop(worker, tmp_path)


def read(env: dict[str, str], pks: list[int]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(manage_shell(env, READ.format(pks=pks)))
    return data


def logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in tmp_path.glob("*.log"))


@pytest.mark.slow
def test_deliveries_missed_while_down_are_redelivered_and_finish_the_deploys(
    stack: tuple[dict[str, str], Web], sim: Simulator, tmp_path: Path
) -> None:
    env, web = stack
    assert sim.webhooks.wait_idle(15)  # the ping reached the running server
    web.stop()

    pks = [
        int(manage_shell(env, REQUEST.format(environment=name)))
        for name in ENVIRONMENTS
    ]
    # The worker dispatches; GitHub runs both deploys to the end while the web
    # server is down, and every webhook about them fails.
    assert sim.wait_until(
        lambda: (
            len(sim.state.runs(REPO)) == 2
            and all(r.status == "completed" for r in sim.state.runs(REPO))
        ),
        timeout=WAIT_SECONDS,
    ), logs(tmp_path)
    assert sim.webhooks.wait_idle(15)
    missed = {r["guid"] for r in sim.state.deliveries() if r["status_code"] == 0}
    assert len(missed) >= 8  # per run: requested, queued, in_progress, completed...
    time.sleep(1)
    before = read(env, pks)
    assert [state for state, _ in before["runs"]] == ["running", "running"]

    web.start()
    missed_count, redelivered, complete = json.loads(manage_shell(env, RECOVER))

    assert (missed_count, redelivered, complete) == (len(missed), len(missed), True)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        after = read(env, pks)
        if all(state == "succeeded" for state, _ in after["runs"]):
            break
        assert time.monotonic() < deadline, (after, logs(tmp_path))
        time.sleep(0.5)
    assert missed <= set(after["guids"])
    for _, kinds in after["runs"]:
        assert kinds[-2:] == ["picked_up", "succeeded"], kinds
    # Every missed event arrived once more, and nothing needs asking again.
    assert sim.webhooks.wait_idle(15)
    redelivered_ok = {
        r["guid"]
        for r in sim.state.deliveries()
        if r["redelivery"] and 200 <= r["status_code"] < 300
    }
    assert redelivered_ok == missed
    assert json.loads(manage_shell(env, RECOVER))[1] == 0
