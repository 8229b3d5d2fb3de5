"""The control plane as GitHub's custom deployment protection rule: its own dispatches
are approved, runs started elsewhere pass the same rules or are rejected with a
comment, answered through the simulator's callback as the control plane's GitHub App.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from controlplane.models import AuditEvent
from deploys import jobs, protection
from deploys.models import (
    DeployRun,
    FreezeWindow,
    GateReview,
    WebhookDelivery,
)
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners.models import Runner, State
from tests.clients import sign
from tests.conftest import logged_in
from tests.deploying import PRIMARY, REPO, Clock, drive, github_id, simulated_env
from tests.simhttp import Captured, job_of, post
from tests.test_github_gateway import private_key_pem

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600, seed=11, pickup_delay=60, job_duration=600, max_retries=1
    ),
]
SECRET = "protection-rule-secret"  # noqa: S105
APP_ID = 4242
INSTALLATION_ID = 77
WORKFLOW = Path(__file__).parent.parent / "deploys/workflows/deploy.yml"


@pytest.fixture
def app(sim: Simulator, settings: Any) -> Iterator[Captured]:
    """The control plane connected to the simulator as its GitHub App, enabled as
    the custom protection rule of ``production``; returns where webhooks arrive."""
    settings.GITHUB_API_URL = sim.url
    settings.GITHUB_REPOSITORY = REPO
    settings.GITHUB_TOKEN = ""
    settings.GITHUB_APP_ID = str(APP_ID)
    settings.GITHUB_APP_INSTALLATION_ID = str(INSTALLATION_ID)
    settings.GITHUB_APP_PRIVATE_KEY = private_key_pem()
    settings.GITHUB_WEBHOOK_SECRET = SECRET
    settings.SITE_URL = "https://deploys.example.com"
    sim.set_workflow(yaml=WORKFLOW.read_text())
    requests.put(
        f"{sim.url}/_sim/apps/{APP_ID}",
        json={"slug": "runner-control-plane", "installation_id": INSTALLATION_ID},
        timeout=10,
    ).raise_for_status()
    requests.put(
        f"{sim.url}/repos/{REPO}/environments/production",
        json={},
        headers={"Authorization": "token admin"},
        timeout=10,
    ).raise_for_status()
    post(
        sim,
        f"/repos/{REPO}/environments/production/deployment_protection_rules",
        {"integration_id": APP_ID},
    ).raise_for_status()
    captured = Captured()
    sim.set_webhook(captured.url, SECRET)
    yield captured
    captured.close()


def requests_for(sim: Simulator, hook: Captured, run_id: int) -> list[dict[str, Any]]:
    sim.webhooks.wait_idle()
    return [
        payload
        for event, payload, _, _ in hook.events()
        if event == "deployment_protection_rule"
        and payload["deployment_callback_url"].endswith(
            f"/runs/{run_id}/deployment_protection_rule"
        )
    ]


def deliver(payload: dict[str, Any], capture: Any) -> WebhookDelivery:
    """Through the real receiver, signed, then processed as the webhook task does
    (its answer is sent once the delivery's transaction commits)."""
    body = json.dumps(payload).encode()
    response = Client().post(
        "/github/webhook",
        body,
        content_type="application/json",
        headers={
            "X-GitHub-Event": "deployment_protection_rule",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body, SECRET),
        },
    )
    assert response.status_code == 202, response.content
    delivery = WebhookDelivery.objects.latest("pk")
    with capture(execute=True):
        jobs.process_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def dispatch_from_github_ui(sim: Simulator, runner: str = PRIMARY) -> int:
    """Someone with write access runs the deploy workflow from GitHub itself."""
    response = requests.post(
        f"{sim.url}/repos/{REPO}/actions/workflows/deploy.yml/dispatches",
        json={
            "ref": "main",
            "inputs": {
                "runner": runner,
                "token": "manual",
                "sha": sim.sha_of("main"),
                "environment": "production",
            },
            "return_run_details": True,
        },
        headers={"Authorization": "token a-developer"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["workflow_run_id"])


def gate_reviews(sim: Simulator, run_id: int) -> list[dict[str, Any]]:
    answer = requests.get(f"{sim.url}/_sim/runs/{run_id}/gate_reviews", timeout=10)
    reviews: list[dict[str, Any]] = answer.json()
    return reviews


def waiting(sim: Simulator, run_id: int) -> bool:
    return bool(job_of(sim, run_id)["status"] == "waiting")


def test_the_control_planes_own_dispatch_is_approved_and_deploys(
    sim, app, sre: User, django_capture_on_commit_callbacks
):
    clock = Clock()
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    run = drive(
        run, lambda r: r.attempts.filter(github_run_id__isnull=False).exists(), clock
    )
    github_run = github_id(run)
    assert sim.wait_until(lambda: requests_for(sim, app, github_run), timeout=5)

    [payload] = requests_for(sim, app, github_run)
    delivery = deliver(payload, django_capture_on_commit_callbacks)

    assert delivery.outcome == WebhookDelivery.Outcome.MATCHED
    review = GateReview.objects.get(delivery=delivery)
    assert review.decision == "approved"
    assert review.deploy_run_id == run.pk
    assert review.answered_at is not None
    assert f"Deploy #{run.pk}" in review.comment
    [answer] = gate_reviews(sim, github_run)
    assert (answer["state"], answer["app_id"]) == ("approved", APP_ID)
    run = drive(run, lambda r: r.is_final, clock)
    assert run.state == DeployRun.State.SUCCEEDED
    # Approving its own deploys is no news: only runs started elsewhere are audited.
    assert not AuditEvent.objects.filter(action="environment.protection_review")


def test_a_run_started_from_github_for_a_frozen_environment_is_rejected(
    sim, app, viewer: User, django_capture_on_commit_callbacks
):
    env = simulated_env(sim)
    now = timezone.now()
    FreezeWindow.objects.create(
        environment=env,
        kind=FreezeWindow.Kind.ONE_OFF,
        reason="quarter-end close",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
    )
    run_id = dispatch_from_github_ui(sim)
    assert sim.wait_until(lambda: requests_for(sim, app, run_id), timeout=5)

    deliver(requests_for(sim, app, run_id)[0], django_capture_on_commit_callbacks)

    review = GateReview.objects.get(github_run_id=run_id)
    assert review.decision == "rejected"
    assert review.deploy_run is None
    assert "production is frozen (quarter-end close)" in review.comment
    assert "https://deploys.example.com/deploys/environments/production/" in (
        review.comment
    )
    [answer] = gate_reviews(sim, run_id)
    assert answer["state"] == "rejected"
    assert answer["comment"] == review.comment
    job = job_of(sim, run_id)
    assert (job["status"], job["conclusion"]) == ("completed", "failure")
    event = AuditEvent.objects.get(action="environment.protection_review")
    assert event.detail["decision"] == "rejected"
    assert event.detail["run"] == run_id
    page = logged_in(viewer).get("/deploys/environments/production/")
    section = page.content.decode().split('id="protection-rule"')[1]
    assert "Runs started outside the control plane" in section
    assert "rejected" in section
    assert "production is frozen (quarter-end close)" in section


def test_a_run_started_elsewhere_that_passes_the_gate_is_approved(
    sim, app, django_capture_on_commit_callbacks
):
    simulated_env(sim)
    run_id = dispatch_from_github_ui(sim)
    assert sim.wait_until(lambda: requests_for(sim, app, run_id), timeout=5)

    deliver(requests_for(sim, app, run_id)[0], django_capture_on_commit_callbacks)

    review = GateReview.objects.get(github_run_id=run_id)
    assert review.decision == "approved"
    assert "started outside" in review.comment
    assert sim.wait_until(lambda: job_of(sim, run_id)["status"] == "completed", 10)
    assert job_of(sim, run_id)["conclusion"] == "success"


@pytest.mark.parametrize(
    ("runner", "expected"),
    [
        ("staging-9", "runner staging-9 is not in the pool of production"),
        ("nowhere", "the job is not pinned to a runner of the pool of production"),
    ],
)
def test_a_run_pinned_outside_the_pool_is_rejected(
    sim, app, django_capture_on_commit_callbacks, runner, expected
):
    simulated_env(sim)
    sim.add_runner("staging-9", ["staging"])
    Runner.objects.create(name="staging-9", state=State.HEALTHY)
    run_id = dispatch_from_github_ui(sim, runner=runner)
    assert sim.wait_until(lambda: requests_for(sim, app, run_id), timeout=5)

    deliver(requests_for(sim, app, run_id)[0], django_capture_on_commit_callbacks)

    review = GateReview.objects.get(github_run_id=run_id)
    assert review.decision == "rejected"
    assert expected in review.comment


def test_an_unhealthy_pinned_runner_rejects_a_run_started_elsewhere(
    sim, app, django_capture_on_commit_callbacks
):
    simulated_env(sim)
    Runner.objects.filter(name=PRIMARY).update(
        state=State.UNHEALTHY, reason="heartbeat_stale"
    )
    run_id = dispatch_from_github_ui(sim)
    assert sim.wait_until(lambda: requests_for(sim, app, run_id), timeout=5)

    deliver(requests_for(sim, app, run_id)[0], django_capture_on_commit_callbacks)

    review = GateReview.objects.get(github_run_id=run_id)
    assert review.decision == "rejected"
    assert f"runner {PRIMARY} may not take a deploy: unhealthy" in review.comment


def test_an_answer_github_could_not_take_is_sent_again(
    sim, app, django_capture_on_commit_callbacks
):
    simulated_env(sim)
    run_id = dispatch_from_github_ui(sim)
    assert sim.wait_until(lambda: requests_for(sim, app, run_id), timeout=5)
    payload = requests_for(sim, app, run_id)[0]
    sim.set_faults(error_rate=1.0)

    delivery = deliver(payload, django_capture_on_commit_callbacks)

    review = GateReview.objects.get(delivery=delivery)
    assert review.answered_at is None
    assert "502" in review.error
    sim.set_faults(error_rate=0.0)
    assert waiting(sim, run_id)
    later = timezone.now() + protection.RETRY_AFTER + timedelta(seconds=1)
    assert protection.retry_unanswered(later) == 1
    review = GateReview.objects.get(delivery=delivery)
    assert review.decision == "approved"
    assert review.answered_at is not None
    assert review.tries == 2
    # Answered: the sweep leaves it alone.
    assert protection.retry_unanswered(later) == 0


def test_an_environment_the_control_plane_does_not_manage_is_rejected(
    sim, app, django_capture_on_commit_callbacks
):
    run_id = dispatch_from_github_ui(sim)
    assert sim.wait_until(lambda: requests_for(sim, app, run_id), timeout=5)

    deliver(requests_for(sim, app, run_id)[0], django_capture_on_commit_callbacks)

    review = GateReview.objects.get(github_run_id=run_id)
    assert review.decision == "rejected"
    assert "manages no environment named 'production'" in review.comment


def test_a_malformed_request_is_kept_as_failed_and_not_answered(
    sim, app, django_capture_on_commit_callbacks
):
    simulated_env(sim)
    payload = {
        "action": "requested",
        "environment": "production",
        "deployment_callback_url": "https://api.github.com/not/a/callback",
        "repository": {"full_name": REPO},
    }

    delivery = deliver(payload, django_capture_on_commit_callbacks)

    assert delivery.outcome == WebhookDelivery.Outcome.FAILED
    assert "callback" in delivery.error
    assert not GateReview.objects.exists()


def test_a_run_started_elsewhere_on_a_ref_the_rules_refuse_is_rejected(
    sim, app, django_capture_on_commit_callbacks
):
    simulated_env(sim, allowed_refs="refs/tags/v*")
    run_id = dispatch_from_github_ui(sim)
    assert sim.wait_until(lambda: requests_for(sim, app, run_id), timeout=5)

    deliver(requests_for(sim, app, run_id)[0], django_capture_on_commit_callbacks)

    review = GateReview.objects.get(github_run_id=run_id)
    assert review.decision == "rejected"
    assert "production deploys only refs matching refs/tags/v*" in review.comment


def test_a_run_started_elsewhere_for_an_environment_needing_approvals_is_rejected(
    sim, app, django_capture_on_commit_callbacks
):
    simulated_env(sim, signoffs_required=2)
    run_id = dispatch_from_github_ui(sim)
    assert sim.wait_until(lambda: requests_for(sim, app, run_id), timeout=5)

    deliver(requests_for(sim, app, run_id)[0], django_capture_on_commit_callbacks)

    review = GateReview.objects.get(github_run_id=run_id)
    assert review.decision == "rejected"
    assert "production needs 2 approval(s) in the control plane" in review.comment
