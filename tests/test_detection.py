"""A dead host is detected by the real processes: simulator, gunicorn, worker, beat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.detection import Stack
from tests.conftest import manage_shell

pytestmark = pytest.mark.slow

WAIT_FOR_STATE = """
import json, time
from django.db import close_old_connections
from controlplane.models import TaskStatus
from runners.models import Runner, RunnerEvent
deadline = time.monotonic() + {timeout}
def done():
    close_old_connections()
    return Runner.objects.filter(name={name!r}, state={state!r}).exists()
while not done() and time.monotonic() < deadline:
    time.sleep(0.5)
runner = Runner.objects.get(name={name!r})
print(json.dumps({{
    "state": runner.state,
    "reason": runner.reason,
    "fleet": dict(Runner.objects.values_list("name", "state")),
    "tokens": Runner.objects.filter(heartbeat_token_digest__isnull=False).count(),
    "events": [e.as_dict() for e in runner.events.filter(kind="state_change")],
    "tasks": sorted(TaskStatus.objects.filter(
        last_success_at__isnull=False).values_list("name", flat=True)),
}}))
"""


def wait_for_state(env: dict[str, str], name: str, state: str) -> dict[str, object]:
    code = WAIT_FOR_STATE.format(name=name, state=state, timeout=120)
    result: dict[str, object] = json.loads(manage_shell(env, code))
    return result


def test_killed_host_turns_unhealthy_while_the_rest_of_the_fleet_stays_healthy(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    with Stack(process_env, tmp_path / "processes.log") as stack:
        before = wait_for_state(stack.env, "prod-primary-1", "healthy")
        assert before["state"] == "healthy"
        assert before["tokens"] == 8  # the whole demo fleet heartbeats
        stack.kill_host("prod-primary-1")
        after = wait_for_state(stack.env, "prod-primary-1", "unhealthy")
    assert (after["state"], after["reason"]) == ("unhealthy", "heartbeat_stale")
    last = after["events"][0]  # type: ignore[index]
    assert last["to_state"] == "unhealthy"
    assert last["reasons"][0] == "heartbeat_stale"
    assert last["runbook"] == "runner-heartbeat-stale"
    fleet = after["fleet"]
    assert isinstance(fleet, dict)
    assert fleet["prod-secondary-1"] == "healthy"
    tasks = after["tasks"]
    assert isinstance(tasks, list)
    assert {"health_sweep", "runner_sync"} <= set(tasks)
