"""Diagnostics without SSH, end to end through the GitHub simulator: an SRE asks,
the control plane dispatches the shipped workflow pinned to the runner, the simulated
job runs the real script against the runner's fake host root, the report comes back
over HTTP and the runner page shows it; and the ways it fails (a job that fails, a
runner that never picks the job up) say why. A canary secret in the runner's _diag
log never reaches the database, the pages, the job's log or the control plane's log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from controlplane.models import AuditEvent
from diagnostics import domain
from diagnostics.models import HostRun
from diagnostics.tasks import dispatch_host_run
from githubsim import Simulator
from runners.models import Runner
from tests.factories import runner_with_token
from tests.hostroot import leaked, make_host_root, simulate_diagnostics_workflow

NAME = "prod-primary-1"

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.sim(connect=True, pickup_delay=0.1),
]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.fixture
def host(sim: Simulator, live_server: Any, tmp_path: Path) -> dict[str, Any]:
    """The primary registered on both sides, its token known to its host (the
    runner's GitHub environment secret), the shipped workflow running the real
    script against ``<hosts>/<runner>``."""
    runner, token = runner_with_token(NAME, github_status="online")
    sim.add_runner(NAME, ["self-hosted", "linux"])
    sim.set_heartbeat_token(NAME, token)
    hosts = tmp_path / "hosts"
    make_host_root(hosts / NAME, NAME)
    simulate_diagnostics_workflow(sim, live_server.url, hosts)
    return {"runner": runner, "token": token, "root": hosts / NAME}


def request(client: Client) -> HostRun:
    answer = client.post(f"/api/v1/runner-diagnostics/{NAME}/run/")
    assert answer.status_code == 202, answer.content
    run = HostRun.objects.get(token=answer.json()["token"])
    dispatch_host_run(run.pk)
    run.refresh_from_db()
    return run


def final(run: HostRun) -> bool:
    run.refresh_from_db()
    return run.finished_at is not None


def test_round_trip_shows_the_report_and_what_changed_and_leaks_no_secret(
    host: dict[str, Any],
    sim: Simulator,
    sre_client: Client,
    viewer_client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = request(sre_client)
    assert first.state == HostRun.State.RUNNING
    assert first.github_run_id is not None
    assert wait_for(lambda: final(first)), first.detail
    assert first.state == HostRun.State.SUCCEEDED, first.detail
    assert first.facts["prometheus"] == "unreachable"
    assert first.facts["controlplane"] == "reachable"
    assert first.facts["runner version"] == "2.330.0"
    github_run = sim.state.run_by_id(first.github_run_id)
    job = sim.state.run_jobs(github_run)[0]
    assert job.runner_name == NAME
    assert wait_for(lambda: github_run.status == "completed")
    assert github_run.conclusion == "success"

    # The runner is upgraded on the host; a second report shows the change.
    listener = host["root"] / "home/runner/actions-runner/bin/Runner.Listener"
    listener.write_text("#!/bin/sh\necho 2.331.0\n")
    second = request(sre_client)
    assert wait_for(lambda: final(second)), second.detail
    assert second.state == HostRun.State.SUCCEEDED

    page = viewer_client.get(f"/fleet/{NAME}/").content.decode()
    assert 'id="diagnostics-facts"' in page
    assert "unreachable" in page
    changes = page[page.index('id="diagnostics-changes"') :]
    assert "runner version" in changes[:400]
    assert "2.330.0" in changes[:400] and "2.331.0" in changes[:400]
    assert 'id="run-diagnostics"' not in page  # viewers cannot run it
    report_page = viewer_client.get(f"/fleet/{NAME}/diagnostics/{second.token}/")
    assert "Connection to broker lost" in report_page.content.decode()
    api = viewer_client.get(f"/api/v1/runner-diagnostics/{NAME}/").json()
    assert api["latest"]["token"] == second.token
    assert api["changes"] == [
        {"fact": "runner version", "before": "2.330.0", "after": "2.331.0"}
    ]
    assert [item["token"] for item in api["history"]] == [second.token, first.token]

    # The canary: never in the database, the pages, the job's log or our log.
    stored = json.dumps(list(HostRun.objects.values()), default=str) + json.dumps(
        list(AuditEvent.objects.values("detail")), default=str
    )
    assert leaked(stored) == []
    assert leaked(page + report_page.content.decode() + json.dumps(api)) == []
    assert leaked(json.dumps(sim.state.job_view(job))) == []
    assert leaked(caplog.text) == []
    assert host["token"] not in stored + caplog.text
    assert AuditEvent.objects.filter(action="runner.diagnostics_requested").count() == 2


def test_a_failed_job_says_at_which_step(
    host: dict[str, Any], sim: Simulator, sre_client: Client, viewer_client: Client
) -> None:
    # The token on the host no longer works: the script's POST is refused, exit 1.
    Runner.objects.get(name=NAME).issue_heartbeat_token("ada-admin")
    run = request(sre_client)
    assert run.github_run_id is not None
    github_run = sim.state.run_by_id(run.github_run_id)
    assert wait_for(lambda: github_run.status == "completed")
    assert github_run.conclusion == "failure"
    job = sim.state.run_jobs(github_run)[0]
    assert "HTTP 401" in job.note

    domain.watch(run, run.requested_at + timedelta(seconds=1))

    run.refresh_from_db()
    assert run.state == HostRun.State.FAILED
    assert run.detail.startswith("the job failed at step 'Diagnose' on prod-primary-1")
    page = viewer_client.get(f"/fleet/{NAME}/").content.decode()
    assert "the job failed at step" in page


def test_a_job_no_runner_picks_up_times_out_and_is_cancelled(
    host: dict[str, Any], sim: Simulator, sre_client: Client, viewer_client: Client
) -> None:
    sim.kill(NAME)  # the host is down; GitHub has not noticed yet
    run = request(sre_client)
    assert run.github_run_id is not None
    github_run = sim.state.run_by_id(run.github_run_id)

    # Before the deadline the watch only looks again later.
    assert domain.watch_due(run.requested_at + timedelta(seconds=30)) == 1
    run.refresh_from_db()
    assert run.finished_at is None

    assert domain.watch_due(run.deadline + timedelta(seconds=1)) == 1

    run.refresh_from_db()
    assert run.state == HostRun.State.TIMED_OUT
    assert "no runner picked up the job" in run.detail
    assert run.detail.endswith("the run was cancelled")
    assert github_run.status == "completed" and github_run.conclusion == "cancelled"
    page = viewer_client.get(f"/fleet/{NAME}/").content.decode()
    assert "no runner picked up the job" in page
    # A late report for the ended run is refused, and a new run may be asked for.
    late = Client().post(
        "/diagnostics",
        data=json.dumps({"token": run.token, "report": {}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {host['token']}",
    )
    assert late.status_code in (400, 409)
    assert sre_client.post(f"/api/v1/runner-diagnostics/{NAME}/run/").status_code == 202
