"""Webhook-first deploy tracking: what ``workflow_job``, ``workflow_run`` and
``deployment_status`` webhooks say advances a deploy with no GitHub call; polling
is the fallback, slower while webhooks for the run keep coming."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from deploys import engine, enqueue, jobs
from deploys.models import DeployAttempt, DeployRun, WebhookDelivery, WorkflowJob
from deploys.triggers import request_deploy
from githubsim import Simulator
from tests.clients import sign
from tests.deploying import PRIMARY, REPO, Clock, drive, simulated_env
from tests.simhttp import Captured, assert_webhook_shape

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=5,
        # 0.1 s and 1 s of real time: the job is still queued when the deploy
        # reaches running; the rest the test learns from webhooks.
        pickup_delay=60,
        job_duration=600,
        connect=True,
        max_retries=1,
    ),
]
SECRET = "webhook-first-secret"  # noqa: S105
LIST_JOBS = "GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs"


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.GITHUB_WEBHOOK_SECRET = SECRET
    settings.DEPLOY_POLL_INTERVAL = 2.0
    settings.DEPLOY_POLL_SLOWDOWN = 4.0
    settings.DEPLOY_WEBHOOK_QUIET_AFTER = 120.0


@pytest.fixture
def hook(sim: Simulator) -> Iterator[Captured]:
    """Where the simulator sends its webhooks; the test forwards them."""
    captured = Captured()
    sim.set_webhook(captured.url, SECRET)
    yield captured
    captured.close()


def deliver(payload: dict[str, Any], event: str) -> WebhookDelivery:
    """Through the real receiver (signed), then processed as the task would."""
    body = json.dumps(payload).encode()
    response = Client().post(
        "/github/webhook",
        body,
        content_type="application/json",
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body, SECRET),
        },
    )
    assert response.status_code == 202, response.content
    delivery = WebhookDelivery.objects.latest("pk")
    jobs.process_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def job_polls(sim: Simulator) -> int:
    """GitHub job-list requests, as the simulator's control API counts them."""
    counts = requests.get(f"{sim.url}/_sim/requests", timeout=5).json()
    return int(counts.get(LIST_JOBS, 0))


def job_webhooks(sim: Simulator, hook: Captured, action: str) -> list[dict[str, Any]]:
    """The simulator's ``workflow_job`` deliveries with ``action``, once sent."""
    sim.webhooks.wait_idle()
    return [
        payload
        for event, payload, _, _ in hook.events()
        if event == "workflow_job" and payload["action"] == action
    ]


def running_deploy(sim: Simulator, sre: User, clock: Clock) -> DeployRun:
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    return drive(run, lambda r: r.state == DeployRun.State.RUNNING, clock)


def test_job_webhooks_pick_up_and_finish_a_deploy_with_no_github_poll(
    sim: Simulator, hook: Captured, sre: User
) -> None:
    clock = Clock()
    run = running_deploy(sim, sre, clock)
    assert sim.wait_until(lambda: job_webhooks(sim, hook, "completed"), timeout=5)
    polls = job_polls(sim)

    for action in ("in_progress", "completed"):
        [payload] = job_webhooks(sim, hook, action)
        delivery = deliver(payload, "workflow_job")
        assert delivery.outcome == WebhookDelivery.Outcome.MATCHED
        engine.advance(run.pk, now=clock())

    run.refresh_from_db()
    attempt = run.attempts.get()
    assert run.state == DeployRun.State.SUCCEEDED
    assert attempt.picked_up_at is not None
    assert attempt.job_runner_name == PRIMARY
    assert attempt.webhook_seen_at is not None
    # The webhooks alone moved the deploy: GitHub was not asked about the jobs.
    assert job_polls(sim) == polls
    # What the engine's SHA and step checks read came with the webhook.
    recorded = WorkflowJob.objects.get(github_id=payload["workflow_job"]["id"])
    assert recorded.as_info().head_sha == payload["workflow_job"]["head_sha"]
    assert recorded.head_sha == run.sha
    assert [s.name for s in recorded.as_info().steps] == [
        s["name"] for s in payload["workflow_job"]["steps"]
    ]


def test_a_failed_step_in_the_webhook_fails_the_deploy_without_a_poll(
    sim: Simulator, hook: Captured, sre: User
) -> None:
    sim.set_outcome("failure")
    clock = Clock()
    run = running_deploy(sim, sre, clock)
    assert sim.wait_until(lambda: job_webhooks(sim, hook, "completed"), timeout=5)
    polls = job_polls(sim)
    [payload] = job_webhooks(sim, hook, "completed")

    deliver(payload, "workflow_job")
    engine.advance(run.pk, now=clock())

    run.refresh_from_db()
    assert run.state == DeployRun.State.FAILED
    assert run.reason == DeployRun.Reason.DEPLOY_FAILED
    assert job_polls(sim) == polls
    job = WorkflowJob.objects.get(github_id=payload["workflow_job"]["id"])
    assert any(step["conclusion"] == "failure" for step in job.steps)


def test_polling_slows_while_webhooks_flow_and_resumes_when_they_stop(
    sim: Simulator, hook: Captured, sre: User
) -> None:
    sim.configure(job_duration=10**6)
    clock = Clock()
    run = running_deploy(sim, sre, clock)
    assert sim.wait_until(lambda: job_webhooks(sim, hook, "in_progress"), timeout=5)
    [payload] = job_webhooks(sim, hook, "in_progress")

    # The control plane's clock moves for the receiver and the engine alike.
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        deliver(payload, "workflow_job")
        polls = job_polls(sim)

        def look_after(seconds: float) -> int:
            traveller.shift(seconds)
            engine.advance(run.pk, now=timezone.now())
            return job_polls(sim) - polls

        # Webhooks flowing: every 2 s x 4 = 8 s since the last webhook or poll.
        assert look_after(3) == 0
        assert look_after(3) == 0
        assert look_after(3) == 1  # 9 s after the webhook
        assert look_after(3) == 1
        assert look_after(6) == 2  # 9 s after that poll
        # Quiet for longer than DEPLOY_WEBHOOK_QUIET_AFTER: back to every 2 s.
        assert look_after(150) == 3
        assert look_after(2.5) == 4
        assert look_after(2.5) == 5
        # Webhooks again: slow again.
        deliver(payload, "workflow_job")
        assert look_after(2.5) == 5
        assert look_after(2.5) == 5
        assert look_after(4) == 6
    run.refresh_from_db()
    assert run.state == DeployRun.State.RUNNING


def test_an_unchanged_job_list_is_polled_with_its_etag_and_costs_no_budget(
    sim: Simulator, sre: User
) -> None:
    sim.configure(job_duration=10**6)
    clock = Clock()
    run = running_deploy(sim, sre, clock)
    drive(run, lambda r: r.attempts.get().picked_up_at is not None, clock)
    attempt = run.attempts.get()
    assert attempt.jobs_etag
    budget = sim.state.limits.budget("test-token")[1]
    polls = job_polls(sim)

    clock.jump(3)
    engine.advance(run.pk, now=clock())

    assert job_polls(sim) == polls + 1
    assert sim.state.limits.budget("test-token")[1] == budget  # a 304


def deployment_status_payload(
    sim: Simulator, github_run_id: int, state: str
) -> dict[str, Any]:
    """A ``deployment_status`` webhook as GitHub sends it for a job that declares
    ``environment: production`` (built to GitHub's schema)."""
    base = sim.url
    user = {
        "login": "octo",
        "id": 1,
        "node_id": "U_1",
        "avatar_url": f"{base}/avatars/1",
        "gravatar_id": "",
        "url": f"{base}/users/octo",
        "html_url": f"{base}/octo",
        "followers_url": f"{base}/users/octo/followers",
        "following_url": f"{base}/users/octo/following",
        "gists_url": f"{base}/users/octo/gists",
        "starred_url": f"{base}/users/octo/starred",
        "subscriptions_url": f"{base}/users/octo/subscriptions",
        "organizations_url": f"{base}/users/octo/orgs",
        "repos_url": f"{base}/users/octo/repos",
        "events_url": f"{base}/users/octo/events",
        "received_events_url": f"{base}/users/octo/received_events",
        "type": "User",
        "site_admin": False,
    }
    repo_url = f"{base}/repos/{REPO}"
    [github_run] = [r for r in sim.state.runs(REPO) if r.id == github_run_id]
    run_json = sim.state.run_json(base, github_run)
    # GitHub's "Deployment Workflow Run" is a trimmed run: no head commit, and the
    # repositories' descriptions are always null.
    run_json["head_commit"] = None
    for key in ("head_repository", "repository"):
        run_json[key] = {**run_json[key], "description": None}
    stamp = "2026-01-01T00:00:00Z"
    return {
        "action": "created",
        "deployment_status": {
            "url": f"{repo_url}/deployments/42/statuses/7",
            "id": 7,
            "node_id": "DES_7",
            "state": state,
            "creator": user,
            "description": "",
            "environment": "production",
            "target_url": "",
            "created_at": stamp,
            "updated_at": stamp,
            "deployment_url": f"{repo_url}/deployments/42",
            "repository_url": repo_url,
        },
        "deployment": {
            "url": f"{repo_url}/deployments/42",
            "id": 42,
            "node_id": "DE_42",
            "sha": run_json["head_sha"],
            "ref": "main",
            "task": "deploy",
            "payload": {},
            "original_environment": "production",
            "environment": "production",
            "description": None,
            "creator": user,
            "created_at": stamp,
            "updated_at": stamp,
            "statuses_url": f"{repo_url}/deployments/42/statuses",
            "repository_url": repo_url,
        },
        "workflow_run": run_json,
        "repository": sim.state.repository_json(base, REPO),
        "sender": user,
    }


def test_a_deployment_status_webhook_is_recorded_and_wakes_the_deploy(
    sim: Simulator, sre: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.configure(job_duration=10**6)
    clock = Clock()
    run = running_deploy(sim, sre, clock)
    attempt = run.attempts.get()
    assert attempt.github_run_id is not None
    woken: list[int] = []
    monkeypatch.setattr(enqueue, "advance_on_commit", woken.append)
    payload = deployment_status_payload(sim, attempt.github_run_id, "in_progress")
    assert_webhook_shape("deployment-status-created", payload)

    delivery = deliver(payload, "deployment_status")

    attempt.refresh_from_db()
    assert delivery.outcome == WebhookDelivery.Outcome.MATCHED
    assert delivery.deploy_run_id == run.pk
    assert attempt.github_deployment_id == 42
    assert attempt.github_deployment_state == "in_progress"
    assert attempt.webhook_seen_at is not None
    assert woken == [run.pk]


def test_a_deployment_status_without_a_state_is_failed_with_its_error(
    sim: Simulator, sre: User
) -> None:
    clock = Clock()
    run = running_deploy(sim, sre, clock)
    attempt = run.attempts.get()
    assert attempt.github_run_id is not None
    payload = deployment_status_payload(sim, attempt.github_run_id, "success")
    del payload["deployment_status"]["state"]

    delivery = deliver(payload, "deployment_status")

    assert delivery.outcome == WebhookDelivery.Outcome.FAILED
    assert "state" in delivery.error
    attempt.refresh_from_db()
    assert attempt.github_deployment_state == ""


def test_a_late_run_requested_webhook_never_reopens_a_completed_run(
    sim: Simulator, hook: Captured, sre: User
) -> None:
    clock = Clock()
    run = running_deploy(sim, sre, clock)
    sim.webhooks.wait_idle()
    assert sim.wait_until(
        lambda: any(
            e == "workflow_run" and p["action"] == "completed"
            for e, p, _, _ in hook.events()
        ),
        timeout=5,
    )
    sim.webhooks.wait_idle()
    runs = {p["action"]: p for e, p, _, _ in hook.events() if e == "workflow_run"}

    deliver(runs["completed"], "workflow_run")
    deliver(runs["requested"], "workflow_run")

    attempt = DeployAttempt.objects.get(run=run)
    assert attempt.github_run_status == "completed"
    assert attempt.github_run_conclusion == "success"
