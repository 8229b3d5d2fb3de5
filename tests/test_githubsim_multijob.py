"""Runs with several jobs in the GitHub simulator: ``needs``, GitHub-hosted runners,
per-job outcomes, the run's conclusion, CI traffic and the runner list's busy=false quirk.

The clock runs at real speed and tests move it by hand, so each test sees every stage
of a run. Responses and payloads are validated against GitHub's schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from githubsim import Simulator
from tests.simhttp import (
    REPO,
    Captured,
    assert_rest_shape,
    assert_webhook_shape,
    dispatch,
    get,
    post,
)

pytestmark = pytest.mark.sim(time_scale=1, demo=True, seed=7)

WORKFLOWS = Path(__file__).parent.parent / "deploys" / "workflows"
# The shipped reference pipeline: build on a GitHub-hosted runner, deploy on the pinned
# self-hosted runner in the environment, then smoke-test on a hosted runner.
PIPELINE = (WORKFLOWS / "deploy-pipeline.yml").read_text()


@pytest.fixture
def receiver() -> Iterator[Captured]:
    captured = Captured()
    yield captured
    captured.close()


def control(sim: Simulator, method: str, path: str, body: Any = None) -> Any:
    return requests.request(method, f"{sim.url}/_sim{path}", json=body, timeout=10)


def load_pipeline(sim: Simulator) -> None:
    response = control(
        sim, "PUT", "/repos/acme/deploy/workflows/deploy.yml", {"yaml": PIPELINE}
    )
    assert response.status_code == 200, response.text
    assert [job["name"] for job in response.json()["jobs"]] == [
        "build",
        "deploy",
        "smoke",
    ]


def start(sim: Simulator, runner: str = "prod-primary-1") -> int:
    response = post(
        sim,
        f"{REPO}/actions/workflows/deploy.yml/dispatches",
        {
            "ref": "main",
            "inputs": {
                "runner": runner,
                "token": "t-1",
                "sha": sim.sha_of("main"),
                "environment": "production",
            },
            "return_run_details": True,
        },
    )
    assert response.status_code == 200, response.text
    run_id: int = response.json()["workflow_run_id"]
    return run_id


def step(sim: Simulator, seconds: float) -> None:
    sim.clock.advance(seconds)
    sim.state.tick()


def jobs(sim: Simulator, run_id: int) -> dict[str, dict[str, Any]]:
    response = get(sim, f"{REPO}/actions/runs/{run_id}/jobs")
    body = assert_rest_shape(
        "GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", response
    )
    assert body["total_count"] == len(body["jobs"])
    return {job["name"]: job for job in body["jobs"]}


def run_of(sim: Simulator, run_id: int) -> dict[str, Any]:
    response = get(sim, f"{REPO}/actions/runs/{run_id}")
    return dict(
        assert_rest_shape(
            "GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", response
        )
    )


def test_deploy_job_exists_only_once_the_build_succeeded(sim, receiver):
    sim.set_webhook(receiver.url, "s3cret")
    load_pipeline(sim)
    sim.configure(pickup_delay=5, job_duration=300)
    run_id = start(sim)

    listed = jobs(sim, run_id)
    assert list(listed) == ["build"]
    assert listed["build"]["labels"] == ["ubuntu-latest"]
    step(sim, 5)
    build = jobs(sim, run_id)["build"]
    assert build["status"] == "in_progress"
    assert build["runner_name"].startswith("GitHub Actions ")
    assert build["runner_group_name"] == "GitHub Actions"
    assert run_of(sim, run_id)["status"] == "in_progress"
    # The deploy job waits on needs: not listed, not queued, its runner stays idle.
    step(sim, 200)
    assert list(jobs(sim, run_id)) == ["build"]
    assert sim.state.runner("prod-primary-1").busy is False

    step(sim, 100)
    listed = jobs(sim, run_id)
    assert listed["build"]["conclusion"] == "success"
    assert listed["deploy"]["status"] == "queued"
    assert listed["deploy"]["labels"] == ["self-hosted", "prod-primary-1"]
    view = control(sim, "GET", f"/jobs/{listed['deploy']['id']}").json()
    assert view["environment"] == "production"
    step(sim, 5)
    deploy = jobs(sim, run_id)["deploy"]
    assert (deploy["status"], deploy["runner_name"]) == (
        "in_progress",
        "prod-primary-1",
    )
    # After "Set up job" and "Check out" (githubsim.state.commits), the job's own work.
    assert [s["name"] for s in deploy["steps"]][1:3] == ["Check out", "Deploy"]
    step(sim, 300)
    assert jobs(sim, run_id)["smoke"]["status"] == "queued"
    assert run_of(sim, run_id)["status"] == "in_progress"
    step(sim, 5)
    step(sim, 300)
    listed = jobs(sim, run_id)
    assert [job["conclusion"] for job in listed.values()] == ["success"] * 3
    run = run_of(sim, run_id)
    assert (run["status"], run["conclusion"]) == ("completed", "success")

    assert sim.webhooks.wait_idle()
    events = [(e, p) for e, p, _, _ in receiver.events() if e != "ping"]
    for event, payload in events:
        assert_webhook_shape(f"{event}-{payload['action']}".replace("_", "-"), payload)
    queued = [
        p["workflow_job"]["name"]
        for e, p in events
        if e == "workflow_job" and p["action"] == "queued"
    ]
    assert queued == ["build", "deploy", "smoke"]
    runs = [p["action"] for e, p in events if e == "workflow_run"]
    assert runs == ["requested", "in_progress", "completed"]


def test_failing_build_skips_the_jobs_that_need_it(sim, receiver):
    sim.set_webhook(receiver.url, "s3cret")
    load_pipeline(sim)
    failing = control(
        sim,
        "POST",
        "/repos/acme/deploy/workflows/deploy.yml/jobs/build",
        {"outcome": "failure", "duration": 60},
    )
    assert failing.status_code == 200, failing.text
    run_id = start(sim)
    step(sim, 5)
    step(sim, 60)
    listed = jobs(sim, run_id)
    assert {name: job["conclusion"] for name, job in listed.items()} == {
        "build": "failure",
        "deploy": "skipped",
        "smoke": "skipped",
    }
    assert listed["deploy"]["runner_name"] is None
    assert [s["conclusion"] for s in listed["build"]["steps"]].count("failure") == 1
    assert run_of(sim, run_id)["conclusion"] == "failure"
    assert sim.state.runner("prod-primary-1").busy is False
    assert sim.webhooks.wait_idle()
    for event, payload, _, _ in receiver.events()[1:]:
        assert_webhook_shape(f"{event}-{payload['action']}".replace("_", "-"), payload)
    queued = [
        p["workflow_job"]["name"]
        for e, p, _, _ in receiver.events()
        if e == "workflow_job" and p["action"] == "queued"
    ]
    assert queued == ["build"]


def test_failing_smoke_after_a_good_deploy_fails_the_run(sim):
    sim.set_workflow(
        jobs=[
            {"name": "build", "runs_on": ["ubuntu-latest"], "duration": 10},
            {
                "name": "deploy",
                "runs_on": ["self-hosted", "${{ inputs.runner }}"],
                "needs": ["build"],
                "duration": 10,
            },
            {
                "name": "smoke",
                "runs_on": ["ubuntu-latest"],
                "needs": ["deploy"],
                "duration": 10,
                "outcome": "failure",
            },
        ]
    )
    run_id = start(sim, "staging-1")
    for _ in range(6):
        step(sim, 10)
    listed = jobs(sim, run_id)
    assert listed["deploy"]["conclusion"] == "success"
    assert listed["smoke"]["conclusion"] == "failure"
    # Step 2 is "Check out" (githubsim.state.commits); step 3 the job's own work.
    assert listed["smoke"]["steps"][2] == {
        **listed["smoke"]["steps"][2],
        "name": "Smoke",
        "conclusion": "failure",
    }
    assert run_of(sim, run_id)["conclusion"] == "failure"


def test_cancel_while_the_build_runs_cancels_it_and_skips_the_rest(sim):
    load_pipeline(sim)
    run_id = start(sim)
    step(sim, 5)
    assert post(sim, f"{REPO}/actions/runs/{run_id}/cancel").status_code == 202
    step(sim, sim.state.config.cancel_delay)
    listed = jobs(sim, run_id)
    assert {name: job["conclusion"] for name, job in listed.items()} == {
        "build": "cancelled",
        "deploy": "skipped",
        "smoke": "skipped",
    }
    assert run_of(sim, run_id)["conclusion"] == "cancelled"


def test_pinned_job_on_a_dead_runner_needs_force_cancel_across_jobs(sim):
    load_pipeline(sim)
    sim.configure(job_duration=60, lease_timeout=100_000)
    run_id = start(sim)
    step(sim, 5)
    step(sim, 60)
    step(sim, 5)
    assert jobs(sim, run_id)["deploy"]["status"] == "in_progress"
    sim.kill("prod-primary-1")
    assert post(sim, f"{REPO}/actions/runs/{run_id}/cancel").status_code == 202
    step(sim, 120)
    assert run_of(sim, run_id)["status"] == "in_progress"
    assert post(sim, f"{REPO}/actions/runs/{run_id}/force-cancel").status_code == 202
    listed = jobs(sim, run_id)
    assert {name: job["conclusion"] for name, job in listed.items()} == {
        "build": "success",
        "deploy": "cancelled",
        "smoke": "skipped",
    }
    run = run_of(sim, run_id)
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")


def test_lost_pinned_job_fails_the_run_with_no_failed_step(sim):
    load_pipeline(sim)
    sim.configure(job_duration=60, lease_timeout=30)
    run_id = start(sim)
    for seconds in (5, 60, 5):
        step(sim, seconds)
    sim.kill("prod-primary-1")
    step(sim, 30)
    listed = jobs(sim, run_id)
    assert listed["deploy"]["conclusion"] == "failure"
    assert "failure" not in [s["conclusion"] for s in listed["deploy"]["steps"]]
    assert listed["smoke"]["conclusion"] == "skipped"
    assert run_of(sim, run_id)["conclusion"] == "failure"


def test_default_workflow_is_the_single_pinned_deploy_job(sim):
    flow = control(sim, "GET", "/repos/acme/deploy/workflows/deploy.yml").json()
    assert flow["jobs"] == [
        {
            "name": "deploy",
            "runs_on": ["self-hosted", "${{ inputs.runner }}"],
            "needs": [],
            "environment": None,
            "duration": None,
            "outcome": None,
        }
    ]
    run_id = dispatch(sim, "staging-2")
    assert jobs(sim, run_id)["deploy"]["labels"] == ["self-hosted", "staging-2"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"yaml": "jobs: [oops"}, "not valid YAML"),
        ({"yaml": "name: x\n"}, "jobs: mapping"),
        ({"yaml": "jobs:\n  a:\n    steps: []\n"}, "has no runs-on"),
        (
            {"jobs": [{"name": "a", "runs_on": ["x"], "needs": ["b"]}]},
            "needs unknown job 'b'",
        ),
        (
            {
                "jobs": [
                    {"name": "a", "runs_on": ["x"], "needs": ["b"]},
                    {"name": "b", "runs_on": ["x"], "needs": ["a"]},
                ]
            },
            "form a cycle",
        ),
        ({"jobs": [{"name": "a", "runs_on": ["x"], "outcome": "meh"}]}, "outcome"),
        ({"jobs": [{"name": "a", "runs_on": 3}]}, "runs_on must be"),
        ({"jobs": []}, "non-empty list"),
        ({}, '{"yaml"'),
    ],
)
def test_bad_workflow_definitions_are_refused_with_what_to_fix(sim, body, message):
    response = control(sim, "PUT", "/repos/acme/deploy/workflows/deploy.yml", body)
    assert response.status_code == 422
    assert message in response.json()["message"]
    # The workflow is unchanged.
    flow = control(sim, "GET", "/repos/acme/deploy/workflows/deploy.yml").json()
    assert [job["name"] for job in flow["jobs"]] == ["deploy"]


def test_new_workflow_file_is_dispatchable_and_unknown_repositories_404(sim):
    response = control(
        sim,
        "PUT",
        "/repos/acme/deploy/workflows/release.yml",
        {"jobs": [{"name": "ship", "runs_on": ["ubuntu-latest"], "duration": 1}]},
    )
    assert response.status_code == 200
    assert get(sim, f"{REPO}/actions/workflows/release.yml").status_code == 200
    missing = control(
        sim,
        "PUT",
        "/repos/acme/nope/workflows/x.yml",
        {"jobs": response.json()["jobs"]},
    )
    assert missing.status_code == 404
    unknown = control(
        sim, "POST", "/repos/acme/deploy/workflows/release.yml/jobs/nope", {}
    )
    assert unknown.status_code == 404


def test_ci_traffic_keeps_a_runner_busy_until_stopped(sim):
    started = control(sim, "POST", "/traffic", {"runners": ["staging-1"]})
    assert started.status_code == 201, started.text
    step(sim, 5)
    assert sim.state.runner("staging-1").busy is True
    run_id = dispatch(sim, "staging-1")
    step(sim, 600)
    assert jobs(sim, run_id)["deploy"]["status"] == "queued"
    # Traffic belongs to another workflow: the deploy workflow lists only the deploy.
    runs = get(sim, f"{REPO}/actions/workflows/deploy.yml/runs").json()
    assert [r["id"] for r in runs["workflow_runs"]] == [run_id]

    assert control(sim, "DELETE", "/traffic").json() == {"stopped_runs": 1}
    traffic = control(sim, "GET", f"/runs/{started.json()['id']}").json()
    assert (traffic["status"], traffic["conclusion"]) == ("completed", "success")
    step(sim, 1)
    assert jobs(sim, run_id)["deploy"]["runner_name"] == "staging-1"


def test_ci_traffic_on_labels_fills_matching_runners(sim):
    response = control(
        sim, "POST", "/traffic", {"labels": ["build"], "count": 3, "duration": 50}
    )
    assert response.status_code == 201
    step(sim, 5)
    assert [sim.state.runner(n).busy for n in ("build-1", "build-2")] == [True, True]
    step(sim, 50)
    step(sim, 50)
    run = control(sim, "GET", f"/runs/{response.json()['id']}").json()
    assert [job["conclusion"] for job in run["jobs"]] == ["success"] * 3
    bad = control(sim, "POST", "/traffic", {"labels": "build"})
    assert bad.status_code == 422
    assert control(sim, "POST", "/traffic", {}).status_code == 422
    assert control(sim, "POST", "/traffic", {"runners": ["ghost"]}).status_code == 404


def test_runner_list_can_show_a_busy_runner_as_idle(sim):
    sim.configure(busy_false_rate=1.0, job_duration=100_000)
    run_id = dispatch(sim, "staging-1")
    step(sim, 5)
    assert jobs(sim, run_id)["deploy"]["status"] == "in_progress"
    listed = get(sim, f"{REPO}/actions/runners", params={"per_page": 100}).json()
    staging = next(r for r in listed["runners"] if r["name"] == "staging-1")
    assert staging["busy"] is False
    one = get(sim, f"{REPO}/actions/runners/{staging['id']}").json()
    assert one["busy"] is False
    view = control(sim, "GET", "/runners/staging-1").json()
    assert (view["busy"], view["reported_busy"]) == (True, False)

    # Part of the time: some windows show the truth, some do not.
    sim.configure(busy_false_rate=0.5, busy_flap_period=10)
    seen = []
    for _ in range(20):
        step(sim, 10)
        page = get(sim, f"{REPO}/actions/runners", params={"per_page": 100}).json()
        seen.append(
            next(r for r in page["runners"] if r["name"] == "staging-1")["busy"]
        )
    assert set(seen) == {True, False}
    # Idle runners are never shown busy.
    assert not any(r["busy"] for r in page["runners"] if r["name"] != "staging-1")
    assert control(sim, "POST", "/config", {"busy_false_rate": 2}).status_code == 422


def test_ctl_loads_a_workflow_file_and_drives_traffic(sim, tmp_path, capsys):
    from githubsim.cli import main as cli_main

    path = tmp_path / "deploy.yml"
    path.write_text(PIPELINE)
    assert cli_main(["ctl", "--url", sim.url, "workflow", str(path)]) == 0
    flow = control(sim, "GET", "/repos/acme/deploy/workflows/deploy.yml").json()
    assert [job["needs"] for job in flow["jobs"]] == [[], ["build"], ["deploy"]]
    assert flow["jobs"][1]["environment"] == "${{ inputs.environment }}"

    assert cli_main(["ctl", "--url", sim.url, "traffic", "staging-2"]) == 0
    step(sim, 5)
    assert sim.state.runner("staging-2").busy is True
    assert cli_main(["ctl", "--url", sim.url, "traffic", "--stop"]) == 0
    assert sim.state.runner("staging-2").busy is False
    capsys.readouterr()


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        (
            "deploy-pipeline.yml",
            [
                ("build", ["ubuntu-latest"], [], None),
                (
                    "deploy",
                    ["self-hosted", "${{ inputs.runner }}"],
                    ["build"],
                    "${{ inputs.environment }}",
                ),
                ("smoke", ["ubuntu-latest"], ["deploy"], None),
            ],
        ),
        (
            "deploy.yml",
            [
                (
                    "deploy",
                    ["self-hosted", "${{ inputs.runner }}"],
                    [],
                    "${{ inputs.environment }}",
                )
            ],
        ),
    ],
)
def test_shipped_reference_workflows_load_and_run(sim, file, expected):
    text = (WORKFLOWS / file).read_text()
    response = control(
        sim, "PUT", "/repos/acme/deploy/workflows/deploy.yml", {"yaml": text}
    )
    assert response.status_code == 200, response.text
    flow = response.json()
    assert [
        (j["name"], j["runs_on"], j["needs"], j["environment"]) for j in flow["jobs"]
    ] == expected
    run_id = start(sim, "staging-1")
    for _ in range(len(expected) * 2):
        step(sim, sim.state.config.job_duration)
    listed = jobs(sim, run_id)
    assert listed["deploy"]["runner_name"] == "staging-1"
    view = control(sim, "GET", f"/jobs/{listed['deploy']['id']}").json()
    assert view["environment"] == "production"
    assert run_of(sim, run_id)["conclusion"] == "success"
