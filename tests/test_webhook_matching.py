"""A ``workflow_run`` webhook carrying a dispatching attempt's correlation token in its
run name gives the attempt its run at once, without the token lookup's polling."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from controlplane.github import gateway
from deploys import engine, jobs
from deploys.models import DeployAttempt, DeployEvent, DeployRun, WebhookDelivery
from deploys.triggers import request_deploy
from githubsim import Simulator
from tests.clients import sign
from tests.deploying import (
    DISPATCH,
    PRIMARY,
    REPO,
    Clock,
    simulated_env,
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=600,
        seed=3,
        pickup_delay=5,
        job_duration=20,
        connect=True,
        max_retries=1,
    ),
]
SECRET = "matching-secret"  # noqa: S105
LIST_RUNS = "GET /repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs"


@pytest.fixture(autouse=True)
def _secret(settings: Any) -> None:
    settings.GITHUB_WEBHOOK_SECRET = SECRET
    # A lost answer would be found by polling only after this long.
    settings.DEPLOY_POLL_INTERVAL = 3600.0


def deliver(payload: dict[str, Any], event: str) -> WebhookDelivery:
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


def test_run_webhook_with_the_token_records_a_lost_dispatch_answer_at_once(
    sim: Simulator, sre: User
) -> None:
    clock = Clock()
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    now = clock()
    engine.STEPS[DeployRun.State.QUEUED](run, now)
    run.refresh_from_db()
    engine.STEPS[DeployRun.State.GATING](run, now)
    attempt = run.current_attempt()
    assert attempt is not None
    # The dispatch was sent and its answer lost: claimed, no run id.
    DeployAttempt.objects.filter(pk=attempt.pk).update(dispatch_claimed_at=now)
    gateway().dispatch_workflow(
        "deploy.yml", "main", {"runner": PRIMARY, "token": attempt.token}
    )
    # What the sender wrote when the answer was lost (a dropped connection).
    DeployEvent.objects.create(
        run=run, attempt=attempt, kind=DeployEvent.Kind.DISPATCH_RETRY
    )
    [github_run] = sim.state.runs(REPO)
    payload: dict[str, Any] = {
        "action": "requested",
        "workflow_run": sim.state.run_json(sim.url, github_run),
        "repository": sim.state.repository_json(sim.url, REPO),
    }
    assert attempt.token in payload["workflow_run"]["display_title"]

    delivery = deliver(payload, "workflow_run")

    attempt.refresh_from_db()
    assert attempt.github_run_id == github_run.id
    assert attempt.state == DeployAttempt.State.DISPATCHED
    assert delivery.outcome == WebhookDelivery.Outcome.MATCHED
    assert delivery.deploy_run_id == run.pk
    event = run.events.get(kind=DeployEvent.Kind.DISPATCH_RECOVERED)
    assert event.message.endswith("in a workflow_run webhook")
    # Nothing was looked up: the webhook alone tied the run to the attempt.
    assert sim.state.request_count(LIST_RUNS) == 0
    assert sim.state.request_count(DISPATCH) == 1


def test_a_run_webhook_beating_the_dispatch_answer_is_the_dispatch_once(
    sim: Simulator, sre: User
) -> None:
    clock = Clock()
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    engine.STEPS[DeployRun.State.QUEUED](run, clock())
    run.refresh_from_db()
    engine.STEPS[DeployRun.State.GATING](run, clock())
    sender = run.current_attempt()
    assert sender is not None
    DeployAttempt.objects.filter(pk=sender.pk).update(dispatch_claimed_at=clock())
    sender.refresh_from_db()
    result = gateway().dispatch_workflow(
        "deploy.yml", "main", {"runner": PRIMARY, "token": sender.token}
    )
    [github_run] = sim.state.runs(REPO)
    payload: dict[str, Any] = {
        "action": "requested",
        "workflow_run": sim.state.run_json(sim.url, github_run),
        "repository": sim.state.repository_json(sim.url, REPO),
    }

    # The webhook is processed before the sender records GitHub's answer.
    deliver(payload, "workflow_run")
    engine.record_dispatch(run, sender, clock(), result.run_id, result.html_url or "")

    kinds = list(run.events.values_list("kind", flat=True))
    assert kinds.count(DeployEvent.Kind.DISPATCHED) == 1
    assert DeployEvent.Kind.DISPATCH_RECOVERED not in kinds
    event = run.events.get(kind=DeployEvent.Kind.DISPATCHED)
    assert "named in a workflow_run webhook" in event.message
    sender.refresh_from_db()
    assert sender.github_run_id == github_run.id


def test_a_token_of_a_finished_attempt_changes_nothing(
    sim: Simulator, sre: User
) -> None:
    env = simulated_env(sim)
    run = request_deploy(sre, env).run
    clock = Clock()
    engine.STEPS[DeployRun.State.QUEUED](run, clock())
    run.refresh_from_db()
    engine.STEPS[DeployRun.State.GATING](run, clock())
    attempt = run.current_attempt()
    assert attempt is not None
    DeployAttempt.objects.filter(pk=attempt.pk).update(
        dispatch_claimed_at=clock(), state=DeployAttempt.State.FAILED
    )
    payload = {
        "action": "requested",
        "workflow_run": {
            "id": 123,
            "name": f"Deploy main [{attempt.token}]",
            "display_title": f"Deploy main [{attempt.token}]",
        },
        "repository": {"full_name": REPO},
    }

    delivery = deliver(payload, "workflow_run")

    attempt.refresh_from_db()
    assert attempt.github_run_id is None
    assert delivery.outcome == WebhookDelivery.Outcome.UNMATCHED
