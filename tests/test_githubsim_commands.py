"""The simulator's job commands: a workflow's self-hosted jobs run a real command
when they start and end with its exit; hosted jobs keep their durations; the control
API validates the command and takes it away again."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from githubsim import Simulator
from tests.simhttp import REPO, post

pytestmark = pytest.mark.sim(pickup_delay=0.1)

WORKFLOW = """
name: Probe
on:
  workflow_dispatch:
    inputs:
      runner: {required: true, type: string}
      token: {required: true, type: string}
jobs:
  probe:
    runs-on: [self-hosted, "${{ inputs.runner }}"]
    steps:
      - run: ./probe
"""
# Writes what it was given into the host root, then exits with the code asked for.
PROBE = (
    "import os, sys; "
    "open(os.path.join(os.environ['HOST_ROOT'], 'seen'), 'w').write("
    "os.environ['RUNNER_NAME'] + ' ' + os.environ['TOKEN'] + ' ' + "
    "os.environ['SECRET']); sys.exit(int(os.environ['CODE']))"
)


def control(sim: Simulator, path: str, body: Any) -> requests.Response:
    return requests.put(f"{sim.url}/_sim{REPO}/workflows/{path}", json=body, timeout=10)


def dispatch(sim: Simulator, runner: str, token: str) -> int:
    answer = post(
        sim,
        f"{REPO}/actions/workflows/probe.yml/dispatches",
        {
            "ref": "main",
            "inputs": {"runner": runner, "token": token},
            "return_run_details": True,
        },
    )
    assert answer.status_code == 200, answer.text
    run_id: int = answer.json()["workflow_run_id"]
    return run_id


def finished(sim: Simulator, run_id: int) -> Any:
    deadline = time.monotonic() + 20
    run = sim.state.run_by_id(run_id)
    while run.status != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
    return run


@pytest.mark.parametrize(("code", "conclusion"), [("0", "success"), ("3", "failure")])
def test_self_hosted_job_runs_the_command_on_its_runners_host_root(
    sim: Simulator, tmp_path: Path, code: str, conclusion: str
) -> None:
    sim.add_runner("prod-primary-1", ["self-hosted", "linux"])
    sim.set_heartbeat_token("prod-primary-1", "rhb_host_secret")
    (tmp_path / "prod-primary-1").mkdir()
    assert control(sim, "probe.yml", {"yaml": WORKFLOW}).status_code == 200
    answer = control(
        sim,
        "probe.yml/command",
        {
            "argv": [sys.executable, "-c", PROBE],
            "env": {
                "TOKEN": "${{ inputs.token }}",
                "SECRET": "${{ secrets.RUNNER_HEARTBEAT_TOKEN }}",
                "CODE": code,
            },
            "hosts_dir": str(tmp_path),
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["command"]["hosts_dir"] == str(tmp_path)

    run = finished(sim, dispatch(sim, "prod-primary-1", "t-42"))

    assert run.conclusion == conclusion
    seen = (tmp_path / "prod-primary-1" / "seen").read_text()
    assert seen == "prod-primary-1 t-42 rhb_host_secret"
    job = sim.state.run_jobs(run)[0]
    assert job.note.startswith(f"exit {code}")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"argv": []}, "argv must be a non-empty list"),
        ({"argv": ["x"], "env": {"A": 1}}, "env must be an object of strings"),
        ({"argv": ["x"], "timeout": 0}, "timeout must be between"),
        ({"argv": ["x"], "shell": True}, "unknown fields ['shell']"),
    ],
)
def test_bad_commands_are_refused_with_what_to_fix(
    sim: Simulator, body: dict[str, Any], message: str
) -> None:
    answer = control(sim, "deploy.yml/command", body)
    assert answer.status_code == 422
    assert message in answer.text


def test_a_null_command_goes_back_to_durations(sim: Simulator) -> None:
    control(sim, "deploy.yml/command", {"argv": ["true"]})
    answer = control(sim, "deploy.yml/command", {"argv": None})
    assert answer.status_code == 200
    assert answer.json()["command"] is None
    assert sim.state.workflow("acme/deploy", "deploy.yml").command is None
