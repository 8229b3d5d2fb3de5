"""Deploys held by their GitHub environment's protection rules, through the simulator
over HTTP: required reviewers and wait timers are waited for (never a failover, no
pickup clock), with their own deadline and reasons; SREs review from the control
plane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client

from controlplane.models import AuditEvent
from deploys.models import DeployRun
from deploys.triggers import request_deploy
from githubsim import Simulator
from githubsim.state.core import ACTOR_ID
from runners.models import State
from tests.deploying import (
    DISPATCH,
    PRIMARY,
    REPO,
    Clock,
    attempts,
    drive,
    final,
    github_id,
    kinds,
    mark,
    simulated_env,
)

REFERENCE_WORKFLOW = Path(__file__).parent.parent / "deploys/workflows/deploy.yml"

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=11,
        pickup_delay=5,
        job_duration=20,
        cancel_delay=3,
        connect=True,
        max_retries=1,
    ),
]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def reference_workflow(sim: Simulator) -> None:
    """The shipped workflow: its deploy job declares ``environment:`` from the input."""
    sim.set_workflow(yaml=REFERENCE_WORKFLOW.read_text())


def protect(sim: Simulator, name: str = "production", **body: Any) -> None:
    response = requests.put(
        f"{sim.url}/repos/{REPO}/environments/{name}",
        json=body,
        headers={"Authorization": "token admin"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def reviewer(sim: Simulator, login: str) -> int:
    response = requests.post(
        f"{sim.url}/_sim/users",
        json={"login": login, "token": f"{login}-t"},
        timeout=10,
    )
    return int(response.json()["id"])


def review_in_github(sim: Simulator, run_id: int, login: str, state: str) -> None:
    env_id = requests.get(
        f"{sim.url}/repos/{REPO}/environments/production",
        headers={"Authorization": "token x"},
        timeout=10,
    ).json()["id"]
    response = requests.post(
        f"{sim.url}/repos/{REPO}/actions/runs/{run_id}/pending_deployments",
        json={"environment_ids": [env_id], "state": state, "comment": "looked at it"},
        headers={"Authorization": f"token {login}-t"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def held(run: DeployRun) -> bool:
    return run.events.filter(kind="approval_waiting").exists()


def test_required_reviewers_hold_the_deploy_without_failover_then_it_goes_on(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    protect(sim, reviewers=[{"type": "User", "id": reviewer(sim, "alice")}])
    env = simulated_env(sim)
    run = request_deploy(sre, env, "main", idempotency_key="k1").run
    run = drive(run, held, clock)
    waiting = run.events.get(kind="approval_waiting")
    assert waiting.message == (
        "waiting for approval in GitHub: required reviewers alice"
    )

    for _ in range(10):  # ten minutes, far past the 120 s pickup timeout
        clock.jump(60)
        run = drive(run, lambda r: True, clock)
    assert run.state == DeployRun.State.RUNNING
    assert "failover" not in kinds(run)
    review_in_github(sim, github_id(run), "alice", "approved")
    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    assert kinds(run).count("approval_waiting") == 1
    assert "approved" in kinds(run) and "failover" not in kinds(run)
    assert len(attempts(run)) == 1
    assert sim.state.request_count(DISPATCH) == 1


def test_rejection_in_github_fails_the_deploy_naming_who(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    protect(sim, reviewers=[{"type": "User", "id": reviewer(sim, "alice")}])
    env = simulated_env(sim)
    run = drive(request_deploy(sre, env, "main", idempotency_key="k1").run, held, clock)

    review_in_github(sim, github_id(run), "alice", "rejected")
    run = drive(run, final, clock)

    assert (run.state, run.reason) == ("failed", "rejected_in_github")
    assert run.message == "rejected in GitHub by alice: looked at it"
    assert len(attempts(run)) == 1
    assert run.runbook_slug == "deploy-github-approval"


def test_approval_timeout_fails_the_deploy_and_cancels_its_github_run(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    protect(sim, reviewers=[{"type": "User", "id": reviewer(sim, "alice")}])
    env = simulated_env(sim, approval_timeout=900)
    run = drive(request_deploy(sre, env, "main", idempotency_key="k1").run, held, clock)

    clock.jump(901)
    run = drive(run, final, clock)
    drive(run, lambda r: r.next_check_at is None, clock)

    assert (run.state, run.reason) == ("failed", "approval_timeout")
    assert "required reviewers alice" in run.message
    github_run = sim.state.get_run(REPO, github_id(run))
    assert github_run.conclusion == "cancelled"


def test_wait_timer_is_shown_and_the_deploy_goes_on_when_it_ends(
    sim: Simulator, clock: Clock, sre: User, settings: Any
) -> None:
    # No webhooks reach this test: the hold is seen by polling GitHub, so it must
    # outlast a poll (20 minutes at the simulator's pace is 2 s).
    settings.DEPLOY_POLL_INTERVAL = 0.5
    protect(sim, wait_timer=20)
    env = simulated_env(sim)
    run = drive(request_deploy(sre, env, "main", idempotency_key="k1").run, held, clock)
    assert run.events.get(kind="approval_waiting").message.startswith(
        "waiting for approval in GitHub: wait timer until "
    )

    run = drive(run, final, clock)

    assert run.state == DeployRun.State.SUCCEEDED
    assert "failover" not in kinds(run)


def test_github_environment_is_passed_as_the_dispatch_input(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    env = simulated_env(sim, github_environment="prod-eu")
    run = drive(
        request_deploy(sre, env, "main", idempotency_key="k1").run, final, clock
    )

    assert sim.state.get_run(REPO, github_id(run)).inputs["environment"] == "prod-eu"
    [deployment] = sim.state.deployments(REPO)
    assert deployment.environment == "prod-eu"


def test_sre_who_is_a_reviewer_approves_through_the_api(
    sim: Simulator, clock: Clock, sre: User, sre_client: Client
) -> None:
    protect(sim, reviewers=[{"type": "User", "id": ACTOR_ID}])
    env = simulated_env(sim)
    run = drive(request_deploy(sre, env, "main", idempotency_key="k1").run, held, clock)

    response = sre_client.post(
        f"/api/v1/deploys/{run.pk}/review/",
        {"state": "approved", "comment": "change window open"},
        content_type="application/json",
    )

    assert response.status_code == 202, response.content
    audit = AuditEvent.objects.get(action="deploy.review")
    assert audit.detail["comment"] == "change window open"
    assert "approval_sent" in kinds(run)
    run = drive(run, final, clock)
    assert run.state == DeployRun.State.SUCCEEDED
    [review] = sim.state.approvals_json(sim.url, REPO, github_id(run))
    assert review["comment"].startswith("change window open (approved by sam-sre")


def test_review_is_refused_with_a_clear_4xx_when_github_says_not_a_reviewer(
    sim: Simulator, clock: Clock, sre: User, sre_client: Client
) -> None:
    protect(sim, reviewers=[{"type": "User", "id": reviewer(sim, "alice")}])
    env = simulated_env(sim)
    run = drive(request_deploy(sre, env, "main", idempotency_key="k1").run, held, clock)

    response = sre_client.post(
        f"/api/v1/deploys/{run.pk}/review/",
        {"state": "approved"},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert "may not review deploys to production" in response.json()["detail"]
    page = sre_client.get(f"/deploys/{run.pk}/").content.decode()
    assert 'id="approve-button"' not in page
    assert "not one of the reviewers: review it in GitHub" in page
    assert "alice" in response.json()["detail"]
    assert not AuditEvent.objects.filter(action="deploy.review").exists()


@pytest.mark.parametrize(
    "body", [{}, {"state": "maybe"}, {"state": "approved", "comment": 5}]
)
def test_review_refuses_bad_input_with_400(
    sim: Simulator, sre: User, sre_client: Client, body: dict[str, Any]
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env, "main", idempotency_key="k1").run

    response = sre_client.post(
        f"/api/v1/deploys/{run.pk}/review/", body, content_type="application/json"
    )

    assert response.status_code == 400


def test_review_of_a_deploy_not_held_is_409(
    sim: Simulator, sre: User, sre_client: Client
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env, "main", idempotency_key="k1").run

    response = sre_client.post(
        f"/api/v1/deploys/{run.pk}/review/",
        {"state": "approved"},
        content_type="application/json",
    )

    assert response.status_code == 409
    assert "not waiting for approval" in response.json()["detail"]


def test_deploy_page_shows_the_hold_and_the_review_buttons(
    sim: Simulator, clock: Clock, sre: User, sre_client: Client
) -> None:
    protect(sim, reviewers=[{"type": "User", "id": ACTOR_ID}])
    env = simulated_env(sim)
    run = drive(request_deploy(sre, env, "main", idempotency_key="k1").run, held, clock)

    page = sre_client.get(f"/deploys/{run.pk}/").content.decode()

    assert "waiting for approval in GitHub: required reviewers deploy-bot" in page
    assert 'id="approve-button"' in page and 'id="reject-button"' in page


def test_a_runner_gone_bad_while_held_fails_over_and_the_new_run_waits_too(
    sim: Simulator, clock: Clock, sre: User
) -> None:
    protect(sim, reviewers=[{"type": "User", "id": reviewer(sim, "alice")}])
    env = simulated_env(sim)
    run = drive(request_deploy(sre, env, "main", idempotency_key="k1").run, held, clock)

    mark(PRIMARY, State.UNHEALTHY)
    run = drive(run, lambda r: r.attempts.count() == 2 and held_again(r), clock)

    assert [a.failover_reason for a in attempts(run)][0] == "runner_unhealthy"
    assert run.state == DeployRun.State.RUNNING
    assert sim.state.get_run(REPO, github_id(run, 1)).conclusion == "cancelled"


def held_again(run: DeployRun) -> bool:
    return run.events.filter(kind="approval_waiting").count() == 2
