"""The simulator's custom deployment protection rules: a GitHub App enabled on an
environment holds its jobs ``waiting``, receives a ``deployment_protection_rule`` event
and approves or rejects through the run's callback as its installation, all in
GitHub's shapes (tests/data/github)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
import requests

from githubsim import Simulator
from tests.simhttp import (
    REPO,
    assert_rest_shape,
    assert_webhook_shape,
    get,
    job_of,
    post,
)
from tests.test_githubsim_environments import (  # noqa: F401 (fixtures)
    add_user,
    deploy,
    put_env,
    receiver,
    reference_workflow,
    until,
)

RULES = (
    "/repos/{owner}/{repo}/environments/{environment_name}/deployment_protection_rules"
)
RULE = RULES + "/{protection_rule_id}"
APPS = RULES + "/apps"
PENDING = "/repos/{owner}/{repo}/actions/runs/{run_id}/pending_deployments"
APP_ID = 4242
INSTALLATION_ID = 77

pytestmark = pytest.mark.sim(time_scale=600, demo=True, seed=7)


def register_app(
    sim: Simulator, app_id: int = APP_ID, slug: str = "gatekeeper"
) -> None:
    response = requests.put(
        f"{sim.url}/_sim/apps/{app_id}",
        json={"slug": slug, "installation_id": INSTALLATION_ID},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def installation_token(sim: Simulator, app_id: int = APP_ID) -> str:
    """The App's installation token, as PyGithub's AppAuth gets it (the simulator reads
    the JWT's issuer and does not check its signature)."""
    app_jwt = jwt.encode(
        {"iss": str(app_id)}, "the-simulator-does-not-check-this-key", algorithm="HS256"
    )
    response = requests.post(
        f"{sim.url}/app/installations/{INSTALLATION_ID}/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def enable_rule(sim: Simulator, environment: str = "production") -> dict[str, Any]:
    put_env(sim, environment, {})
    response = post(
        sim,
        f"{REPO}/environments/{environment}/deployment_protection_rules",
        {"integration_id": APP_ID},
    )
    rule: dict[str, Any] = assert_rest_shape("POST", RULES, response)
    assert response.status_code == 201
    return rule


def review(
    sim: Simulator, run_id: int, token: str, body: dict[str, Any]
) -> requests.Response:
    return post(
        sim,
        f"{REPO}/actions/runs/{run_id}/deployment_protection_rule",
        body,
        headers={"Authorization": f"token {token}"},
    )


def test_rules_are_created_listed_read_and_deleted_in_githubs_shape(sim):
    register_app(sim)
    rule = enable_rule(sim)
    assert rule["app"]["id"] == APP_ID
    assert rule["app"]["slug"] == "gatekeeper"
    assert rule["enabled"] is True

    base = f"{REPO}/environments/production/deployment_protection_rules"
    listed = assert_rest_shape("GET", RULES, get(sim, base))
    assert listed["total_count"] == 1
    assert [r["id"] for r in listed["custom_deployment_protection_rules"]] == [
        rule["id"]
    ]
    apps = assert_rest_shape("GET", APPS, get(sim, f"{base}/apps"))
    assert [
        a["slug"]
        for a in apps["available_custom_deployment_protection_rule_integrations"]
    ] == ["gatekeeper"]
    got = assert_rest_shape("GET", RULE, get(sim, f"{base}/{rule['id']}"))
    assert got == rule

    deleted = requests.delete(
        f"{sim.url}{base}/{rule['id']}",
        headers={"Authorization": "token test-token"},
        timeout=10,
    )
    assert deleted.status_code == 204
    assert get(sim, f"{base}/{rule['id']}").status_code == 404
    assert get(sim, base).json()["total_count"] == 0


@pytest.mark.parametrize(
    ("integration_id", "message"),
    [(999, "is not installed"), ("4242", "must be an integer"), (APP_ID, "already")],
)
def test_a_rule_for_an_unknown_app_or_twice_is_refused_with_422(
    sim, integration_id, message
):
    register_app(sim)
    enable_rule(sim)

    response = post(
        sim,
        f"{REPO}/environments/production/deployment_protection_rules",
        {"integration_id": integration_id},
    )

    assert response.status_code == 422
    assert message in response.json()["message"]


def test_the_rule_holds_the_job_and_asks_the_app(sim, receiver):  # noqa: F811
    register_app(sim)
    enable_rule(sim)

    run_id = deploy(sim, "production")
    until(lambda: job_of(sim, run_id)["status"] == "waiting")
    assert sim.webhooks.wait_idle()

    [pending] = assert_rest_shape(
        "GET", PENDING, get(sim, f"{REPO}/actions/runs/{run_id}/pending_deployments")
    )
    assert pending["environment"]["name"] == "production"
    assert pending["reviewers"] == []
    [request] = [
        b for n, b, _, _ in receiver.events() if n == "deployment_protection_rule"
    ]
    assert_webhook_shape("deployment-protection-rule-requested", request)
    assert request["action"] == "requested"
    assert request["environment"] == "production"
    assert request["event"] == "workflow_dispatch"
    assert request["installation"]["id"] == INSTALLATION_ID
    assert request["deployment_callback_url"] == (
        f"{sim.url}{REPO}/actions/runs/{run_id}/deployment_protection_rule"
    )
    assert request["deployment"]["environment"] == "production"


def test_the_apps_approval_releases_the_job(sim, receiver):  # noqa: F811
    register_app(sim)
    enable_rule(sim)
    run_id = deploy(sim, "production")
    until(lambda: job_of(sim, run_id)["status"] == "waiting")

    response = review(
        sim,
        run_id,
        installation_token(sim),
        {"environment_name": "production", "state": "approved", "comment": "healthy"},
    )

    assert response.status_code == 204, response.text
    until(lambda: job_of(sim, run_id)["status"] == "completed")
    assert job_of(sim, run_id)["conclusion"] == "success"
    reviews = requests.get(f"{sim.url}/_sim/runs/{run_id}/gate_reviews", timeout=10)
    [answer] = reviews.json()
    assert {k: answer[k] for k in ("environment", "app_id", "state", "comment")} == {
        "environment": "production",
        "app_id": APP_ID,
        "state": "approved",
        "comment": "healthy",
    }
    assert answer["asked_at"] <= answer["answered_at"]


def test_the_apps_rejection_fails_the_job_with_its_comment(sim):
    register_app(sim)
    enable_rule(sim)
    run_id = deploy(sim, "production")
    until(lambda: job_of(sim, run_id)["status"] == "waiting")

    response = review(
        sim,
        run_id,
        installation_token(sim),
        {"environment_name": "production", "state": "rejected", "comment": "frozen"},
    )

    assert response.status_code == 204
    job = job_of(sim, run_id)
    assert (job["status"], job["conclusion"]) == ("completed", "failure")
    run = get(sim, f"{REPO}/actions/runs/{run_id}").json()
    assert run["conclusion"] == "failure"
    [deployment] = get(sim, f"{REPO}/deployments").json()
    statuses = get(sim, f"{REPO}/deployments/{deployment['id']}/statuses").json()
    assert statuses[0]["state"] == "failure"
    assert "rejected by gatekeeper: frozen" in statuses[0]["description"]


def test_only_the_apps_installation_may_review(sim):
    register_app(sim)
    register_app(sim, app_id=5151, slug="other-app")
    enable_rule(sim)
    run_id = deploy(sim, "production")
    until(lambda: job_of(sim, run_id)["status"] == "waiting")
    body = {"environment_name": "production", "state": "approved"}

    as_user = review(sim, run_id, "test-token", body)
    as_other_app = review(sim, run_id, installation_token(sim, app_id=5151), body)
    wrong_environment = review(
        sim, run_id, installation_token(sim), {**body, "environment_name": "staging"}
    )

    assert as_user.status_code == 403
    assert "GitHub App" in as_user.json()["message"]
    assert as_other_app.status_code == 422
    assert wrong_environment.status_code == 422
    assert job_of(sim, run_id)["status"] == "waiting"


@pytest.mark.parametrize(
    "body",
    [
        {"state": "approved"},
        {"environment_name": "production", "state": "maybe"},
        {"environment_name": "production"},
        {"environment_name": "production", "state": "approved", "comment": 5},
    ],
)
def test_a_malformed_review_is_refused_with_422(sim, body):
    register_app(sim)
    enable_rule(sim)
    run_id = deploy(sim, "production")
    until(lambda: job_of(sim, run_id)["status"] == "waiting")

    response = review(sim, run_id, installation_token(sim), body)

    assert response.status_code == 422
    assert job_of(sim, run_id)["status"] == "waiting"


def test_the_app_and_a_reviewer_must_both_approve(sim):
    register_app(sim)
    alice = add_user(sim, "alice", token="alice-token")
    enable_rule(sim)
    put_env(sim, "production", {"reviewers": [{"type": "User", "id": alice}]})
    run_id = deploy(sim, "production")
    until(lambda: job_of(sim, run_id)["status"] == "waiting")
    env_id = get(sim, f"{REPO}/environments/production").json()["id"]

    review(
        sim,
        run_id,
        installation_token(sim),
        {"environment_name": "production", "state": "approved"},
    )
    still = job_of(sim, run_id)["status"]
    post(
        sim,
        f"{REPO}/actions/runs/{run_id}/pending_deployments",
        {"environment_ids": [env_id], "state": "approved", "comment": "ok"},
        headers={"Authorization": "token alice-token"},
    )

    assert still == "waiting"
    until(lambda: job_of(sim, run_id)["status"] == "completed")
    assert job_of(sim, run_id)["conclusion"] == "success"
