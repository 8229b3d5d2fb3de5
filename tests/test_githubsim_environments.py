"""The simulator's GitHub environments: protection rules (required reviewers, wait
timer) holding a job as ``waiting``, pending deployments approved or rejected over the
API, and deployments with statuses and webhooks, all in GitHub's shapes
(tests/data/github)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator

from githubsim import Simulator
from tests.simhttp import (
    REPO,
    Captured,
    assert_rest_shape,
    assert_webhook_shape,
    get,
    job_of,
    post,
    rest_schema,
)

ENVS = "/repos/{owner}/{repo}/environments"
ENV = ENVS + "/{environment_name}"
PENDING = "/repos/{owner}/{repo}/actions/runs/{run_id}/pending_deployments"
DEPLOYMENTS = "/repos/{owner}/{repo}/deployments"
STATUSES = DEPLOYMENTS + "/{deployment_id}/statuses"

pytestmark = pytest.mark.sim(time_scale=600, demo=True, seed=7)


REFERENCE_WORKFLOW = Path(__file__).parent.parent / "deploys/workflows/deploy.yml"


@pytest.fixture(autouse=True)
def reference_workflow(sim: Simulator) -> None:
    """The shipped workflow: its deploy job declares ``environment:`` from the input."""
    sim.set_workflow(yaml=REFERENCE_WORKFLOW.read_text())


@pytest.fixture
def receiver(sim: Simulator) -> Iterator[Captured]:
    captured = Captured()
    sim.set_webhook(captured.url, "s")
    yield captured
    captured.close()


def until(check: Callable[[], Any], seconds: float = 10.0) -> Any:
    """Poll the simulator until ``check`` is truthy (it runs on its own clock)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("the simulator never got there")


def put_env(sim: Simulator, name: str, body: dict[str, Any]) -> requests.Response:
    return requests.put(
        f"{sim.url}{REPO}/environments/{name}",
        json=body,
        headers={"Authorization": "token test-token"},
        timeout=10,
    )


def add_user(sim: Simulator, login: str, token: str = "") -> int:
    response = requests.post(
        f"{sim.url}/_sim/users", json={"login": login, "token": token}, timeout=10
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def deploy(sim: Simulator, environment: str, runner: str = "prod-primary-1") -> int:
    response = post(
        sim,
        f"{REPO}/actions/workflows/deploy.yml/dispatches",
        {
            "ref": "main",
            "inputs": {
                "runner": runner,
                "token": "t",
                "sha": sim.sha_of("main"),
                "environment": environment,
            },
            "return_run_details": True,
        },
    )
    assert response.status_code == 200, response.text
    return int(response.json()["workflow_run_id"])


def assert_statuses_shape(response: requests.Response) -> list[dict[str, Any]]:
    """GitHub writes ``waiting`` while a protection rule holds the job, although its
    OpenAPI description leaves it out of the enum; the check adds it back."""
    schema = copy.deepcopy(rest_schema("GET", STATUSES, response.status_code))
    state = schema["components"]["schemas"]["deployment-status"]["properties"]["state"]
    state["enum"].append("waiting")
    body: list[dict[str, Any]] = response.json()
    errors = list(Draft202012Validator(schema).iter_errors(body))
    assert not errors, [e.message for e in errors[:5]]
    return body


def states_of(sim: Simulator, deployment_id: int) -> list[str]:
    response = get(sim, f"{REPO}/deployments/{deployment_id}/statuses")
    return [s["state"] for s in reversed(assert_statuses_shape(response))]


# Environments -----------------------------------------------------------------------


def test_put_environment_sets_reviewers_and_wait_timer_in_githubs_shape(sim):
    alice = add_user(sim, "alice")

    response = put_env(
        sim,
        "production",
        {"wait_timer": 5, "reviewers": [{"type": "User", "id": alice}]},
    )

    env = assert_rest_shape("PUT", ENV, response)
    rules = {rule["type"]: rule for rule in env["protection_rules"]}
    assert rules["wait_timer"]["wait_timer"] == 5
    assert rules["required_reviewers"]["reviewers"][0]["reviewer"]["login"] == "alice"
    listed = assert_rest_shape("GET", ENVS, get(sim, f"{REPO}/environments"))
    # The demo's staging environment exists because it has secrets.
    assert [e["name"] for e in listed["environments"]] == ["production", "staging"]
    got = assert_rest_shape("GET", ENV, get(sim, f"{REPO}/environments/production"))
    assert got["id"] == env["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"wait_timer": 43_201}, "wait_timer"),
        ({"wait_timer": "5"}, "wait_timer"),
        ({"reviewers": [{"type": "User", "id": 424242}]}, "reviewers"),
        ({"reviewers": "alice"}, "reviewers"),
        ({"colour": "red"}, "body"),
    ],
)
def test_put_environment_refuses_bad_input_with_422(sim, body, field):
    response = put_env(sim, "production", body)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


def test_unknown_environment_is_404(sim):
    assert get(sim, f"{REPO}/environments/nowhere").status_code == 404


# Jobs held by protection rules --------------------------------------------------------


def test_unprotected_environment_queues_the_job_and_records_a_deployment(sim):
    run_id = deploy(sim, "staging", runner="staging-1")

    until(lambda: job_of(sim, run_id)["status"] == "completed")
    deployments = assert_rest_shape("GET", DEPLOYMENTS, get(sim, f"{REPO}/deployments"))
    [deployment] = deployments
    assert deployment["environment"] == "staging"
    until(lambda: states_of(sim, deployment["id"])[-1] == "success")
    assert states_of(sim, deployment["id"]) == ["queued", "in_progress", "success"]
    assert get(sim, f"{REPO}/actions/runs/{run_id}/pending_deployments").json() == []


def test_required_reviewers_hold_the_job_waiting_and_list_it_pending(sim):
    alice = add_user(sim, "alice")
    put_env(sim, "production", {"reviewers": [{"type": "User", "id": alice}]})

    run_id = deploy(sim, "production")
    sim.clock.advance(3600)
    time.sleep(0.2)

    job = job_of(sim, run_id)
    assert job["status"] == "waiting"
    assert job["runner_name"] is None
    pending = assert_rest_shape(
        "GET", PENDING, get(sim, f"{REPO}/actions/runs/{run_id}/pending_deployments")
    )
    [entry] = pending
    assert entry["environment"]["name"] == "production"
    assert entry["wait_timer"] == 0
    assert entry["current_user_can_approve"] is False
    assert [r["reviewer"]["login"] for r in entry["reviewers"]] == ["alice"]
    [deployment] = get(sim, f"{REPO}/deployments?environment=production").json()
    assert states_of(sim, deployment["id"]) == ["waiting"]


def test_approval_by_a_reviewer_queues_the_job_and_the_deploy_goes_on(sim, receiver):
    alice = add_user(sim, "alice", token="alice-token")
    put_env(sim, "production", {"reviewers": [{"type": "User", "id": alice}]})
    run_id = deploy(sim, "production")
    until(lambda: job_of(sim, run_id)["status"] == "waiting")
    [entry] = get(
        sim,
        f"{REPO}/actions/runs/{run_id}/pending_deployments",
        headers={"Authorization": "token alice-token"},
    ).json()
    assert entry["current_user_can_approve"] is True

    response = post(
        sim,
        f"{REPO}/actions/runs/{run_id}/pending_deployments",
        {
            "environment_ids": [entry["environment"]["id"]],
            "state": "approved",
            "comment": "ship it",
        },
        headers={"Authorization": "token alice-token"},
    )

    [deployment] = assert_rest_shape("POST", PENDING, response)
    until(lambda: job_of(sim, run_id)["status"] == "completed")
    assert job_of(sim, run_id)["conclusion"] == "success"
    assert job_of(sim, run_id)["runner_name"] == "prod-primary-1"
    until(lambda: states_of(sim, deployment["id"])[-1] == "success")
    assert states_of(sim, deployment["id"]) == [
        "waiting",
        "queued",
        "in_progress",
        "success",
    ]
    assert sim.webhooks.wait_idle()
    events = receiver.events()
    kinds = [(name, body.get("action")) for name, body, _, _ in events]
    assert ("deployment", "created") in kinds
    assert ("deployment_review", "approved") in kinds
    assert ("workflow_job", "waiting") in kinds
    for name, body, _, _ in events:
        if name.startswith("deployment"):
            assert_webhook_shape(f"{name.replace('_', '-')}-{body['action']}", body)
    [review] = [b for n, b, _, _ in events if n == "deployment_review"]
    assert review["approver"]["login"] == "alice"
    assert review["comment"] == "ship it"


def test_rejection_fails_the_job_and_the_run(sim, receiver):
    alice = add_user(sim, "alice", token="alice-token")
    put_env(sim, "production", {"reviewers": [{"type": "User", "id": alice}]})
    run_id = deploy(sim, "production")
    until(lambda: job_of(sim, run_id)["status"] == "waiting")
    env_id = get(sim, f"{REPO}/environments/production").json()["id"]

    response = post(
        sim,
        f"{REPO}/actions/runs/{run_id}/pending_deployments",
        {"environment_ids": [env_id], "state": "rejected", "comment": "not today"},
        headers={"Authorization": "token alice-token"},
    )

    assert response.status_code == 200
    job = job_of(sim, run_id)
    assert (job["status"], job["conclusion"]) == ("completed", "failure")
    run = get(sim, f"{REPO}/actions/runs/{run_id}").json()
    assert (run["status"], run["conclusion"]) == ("completed", "failure")
    [deployment] = get(sim, f"{REPO}/deployments").json()
    assert states_of(sim, deployment["id"]) == ["waiting", "failure"]
    assert sim.webhooks.wait_idle()
    rejected = [b for n, b, _, _ in receiver.events() if n == "deployment_review"]
    assert rejected[0]["action"] == "rejected"
    approvals = "/repos/{owner}/{repo}/actions/runs/{run_id}/approvals"
    [review] = assert_rest_shape(
        "GET", approvals, get(sim, f"{REPO}/actions/runs/{run_id}/approvals")
    )
    assert (review["state"], review["user"]["login"]) == ("rejected", "alice")
    assert review["comment"] == "not today"
    assert_webhook_shape("deployment-review-rejected", rejected[0])


def test_a_user_who_is_not_a_reviewer_cannot_approve(sim):
    alice = add_user(sim, "alice")
    put_env(sim, "production", {"reviewers": [{"type": "User", "id": alice}]})
    run_id = deploy(sim, "production")
    until(lambda: job_of(sim, run_id)["status"] == "waiting")
    env_id = get(sim, f"{REPO}/environments/production").json()["id"]

    response = post(
        sim,
        f"{REPO}/actions/runs/{run_id}/pending_deployments",
        {"environment_ids": [env_id], "state": "approved", "comment": "me"},
    )

    assert response.status_code == 422
    assert "not a required reviewer" in response.json()["message"]
    assert job_of(sim, run_id)["status"] == "waiting"


@pytest.mark.parametrize(
    "body",
    [
        {"state": "approved", "comment": "x"},
        {"environment_ids": [], "state": "approved", "comment": "x"},
        {"environment_ids": [1], "state": "maybe", "comment": "x"},
        {"environment_ids": [1], "state": "approved"},
        {"environment_ids": [161000999], "state": "approved", "comment": "x"},
    ],
)
def test_review_refuses_bad_input_with_422(sim, body):
    run_id = deploy(sim, "staging", runner="staging-1")

    response = post(sim, f"{REPO}/actions/runs/{run_id}/pending_deployments", body)

    assert response.status_code == 422, response.text


def test_wait_timer_holds_the_job_for_its_minutes_of_simulated_time(sim):
    sim.clock.set_time_scale(1)
    put_env(sim, "production", {"wait_timer": 10})
    run_id = deploy(sim, "production")
    time.sleep(0.2)
    [entry] = get(sim, f"{REPO}/actions/runs/{run_id}/pending_deployments").json()
    assert entry["wait_timer"] == 10
    assert entry["wait_timer_started_at"] is not None

    sim.clock.advance(9 * 60)
    time.sleep(0.2)
    assert job_of(sim, run_id)["status"] == "waiting"
    sim.clock.advance(61)

    until(lambda: job_of(sim, run_id)["status"] != "waiting")
    assert get(sim, f"{REPO}/actions/runs/{run_id}/pending_deployments").json() == []


def test_cancelling_a_waiting_run_completes_it(sim):
    alice = add_user(sim, "alice")
    put_env(sim, "production", {"reviewers": [{"type": "User", "id": alice}]})
    run_id = deploy(sim, "production")
    until(lambda: job_of(sim, run_id)["status"] == "waiting")

    assert post(sim, f"{REPO}/actions/runs/{run_id}/cancel").status_code == 202

    assert job_of(sim, run_id)["conclusion"] == "cancelled"
    until(
        lambda: (
            get(sim, f"{REPO}/actions/runs/{run_id}/pending_deployments").json() == []
        )
    )


def test_a_later_success_marks_the_earlier_deployment_inactive(sim):
    first = deploy(sim, "staging", runner="staging-1")
    until(lambda: job_of(sim, first)["status"] == "completed")
    second = deploy(sim, "staging", runner="staging-1")
    until(lambda: job_of(sim, second)["status"] == "completed")

    newer, older = get(sim, f"{REPO}/deployments").json()
    until(lambda: states_of(sim, newer["id"])[-1] == "success")
    assert states_of(sim, older["id"])[-1] == "inactive"


def test_rejecting_the_pipelines_deploy_job_skips_smoke_and_fails_the_run(sim):
    pipeline = REFERENCE_WORKFLOW.with_name("deploy-pipeline.yml")
    sim.set_workflow(yaml=pipeline.read_text())
    alice = add_user(sim, "alice", token="alice-token")
    put_env(sim, "production", {"reviewers": [{"type": "User", "id": alice}]})
    run_id = deploy(sim, "production")

    def jobs() -> dict[str, dict[str, Any]]:
        listed = get(sim, f"{REPO}/actions/runs/{run_id}/jobs").json()["jobs"]
        return {job["name"]: job for job in listed}

    # The build runs on GitHub's hosted runners; the deploy job then waits.
    until(lambda: jobs().get("deploy", {}).get("status") == "waiting")
    assert jobs()["build"]["conclusion"] == "success"
    env_id = get(sim, f"{REPO}/environments/production").json()["id"]

    post(
        sim,
        f"{REPO}/actions/runs/{run_id}/pending_deployments",
        {"environment_ids": [env_id], "state": "rejected", "comment": "no"},
        headers={"Authorization": "token alice-token"},
    )

    final = jobs()
    assert final["deploy"]["conclusion"] == "failure"
    assert final["smoke"]["conclusion"] == "skipped"
    assert get(sim, f"{REPO}/actions/runs/{run_id}").json()["conclusion"] == "failure"
