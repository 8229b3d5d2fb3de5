"""The GitHub webhook receiver: signatures, dedupe, size cap, scope, outcomes,
processing and retention."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from deploys import jobs
from deploys.models import (
    Environment,
    WebhookDelivery,
    WebhookRedelivery,
    WorkflowJob,
)
from deploys.webhooks import MAX_BODY_BYTES, signature_is_valid
from runners.models import Runner
from tests.clients import WEBHOOK_SECRET, sign

SECRET = WEBHOOK_SECRET


@pytest.fixture(autouse=True)
def _secret(settings: Any) -> None:
    settings.GITHUB_WEBHOOK_SECRET = SECRET
    settings.GITHUB_REPOSITORY = "acme/deploy"
    settings.GITHUB_ORGANIZATION = ""


def repository(full_name: str = "acme/deploy") -> dict[str, Any]:
    return {"full_name": full_name, "owner": {"login": full_name.split("/")[0]}}


def job_payload(
    job_id: int = 7, status: str = "queued", repo: str = "acme/deploy", **job: Any
) -> dict[str, Any]:
    return {
        "action": status,
        "repository": repository(repo),
        "workflow_job": {
            "id": job_id,
            "run_id": 99,
            "name": "deploy",
            "workflow_name": "Deploy",
            "status": status,
            "conclusion": None,
            "labels": ["self-hosted", "prod-primary-1"],
            "runner_name": None,
            "html_url": "https://github.example/acme/deploy/actions/runs/99/job/7",
            "created_at": "2026-11-26T10:00:00Z",
            "started_at": "2026-11-26T10:00:00Z",
            "completed_at": None,
            **job,
        },
    }


def post(
    client: Client,
    payload: Any,
    *,
    event: str = "workflow_job",
    delivery: str | None = None,
    signature: str | None = None,
) -> Any:
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body) if signature is None else signature,
    }
    return client.post(
        "/github/webhook", body, content_type="application/json", headers=headers
    )


def test_githubs_published_test_vector_verifies() -> None:
    assert signature_is_valid(
        "It's a Secret to Everybody",
        b"Hello, World!",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )
    assert not signature_is_valid(
        "It's a Secret to Everybody",
        b"Hello, World?",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ("", "missing X-Hub-Signature-256"),
        ("sha256=" + "0" * 64, "does not match"),
        ("sha1=abc", "does not match"),
    ],
)
def test_bad_signature_is_rejected_without_a_write(
    signature: str, message: str
) -> None:
    response = post(Client(), job_payload(), signature=signature)
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_signature_made_with_another_secret_is_rejected() -> None:
    body = json.dumps(job_payload()).encode()
    response = post(Client(), job_payload(), signature=sign(body, "other"))
    assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_redelivery_is_stored_once(django_capture_on_commit_callbacks: Any) -> None:
    delivery = str(uuid.uuid4())
    with django_capture_on_commit_callbacks() as callbacks:
        first = post(Client(), job_payload(), delivery=delivery)
        second = post(Client(), job_payload(), delivery=delivery)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate"}
    assert WebhookDelivery.objects.count() == 1
    assert len(callbacks) == 1


@pytest.mark.django_db
def test_oversized_body_is_refused() -> None:
    payload = job_payload(name="x" * MAX_BODY_BYTES)
    response = post(Client(), payload)
    assert response.status_code == 413
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_ping_and_unused_events_are_recorded_as_ignored() -> None:
    assert post(Client(), {"zen": "Keep it simple."}, event="ping").json() == {
        "status": "pong"
    }
    response = post(Client(), {"action": "opened"}, event="issues")
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    outcomes = dict(WebhookDelivery.objects.values_list("event", "outcome"))
    assert outcomes == {"ping": "ignored", "issues": "ignored"}
    issues = WebhookDelivery.objects.get(event="issues")
    assert "does not use issues events" in issues.reason
    assert issues.processed_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "body is not a JSON object"),
        (b"[1, 2]", "body is not a JSON object"),
        (
            json.dumps({"action": "queued"}).encode(),
            "payload has no workflow_job object",
        ),
    ],
)
def test_signed_malformed_payload_is_recorded_failed_at_once(
    body: bytes, error: str, django_capture_on_commit_callbacks: Any
) -> None:
    delivery = str(uuid.uuid4())
    headers = {
        "X-GitHub-Event": "workflow_job",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body),
    }
    with django_capture_on_commit_callbacks() as callbacks:
        response = Client().post(
            "/github/webhook", body, content_type="application/json", headers=headers
        )
    assert response.status_code == 400
    assert response.json()["error"] == error
    stored = WebhookDelivery.objects.get(delivery_id=delivery)
    assert stored.outcome == WebhookDelivery.Outcome.FAILED
    assert stored.error == error
    assert stored.processed_at is not None
    assert callbacks == []
    again = Client().post(
        "/github/webhook", body, content_type="application/json", headers=headers
    )
    assert again.json() == {"status": "duplicate"}


@pytest.mark.django_db
def test_delivery_from_an_unmanaged_repository_is_ignored(
    django_capture_on_commit_callbacks: Any,
) -> None:
    Runner.objects.create(name="r1", github_busy=False)
    payload = job_payload(status="in_progress", repo="someone/else", runner_name="r1")
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(Client(), payload)
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    stored = WebhookDelivery.objects.get()
    assert stored.outcome == WebhookDelivery.Outcome.IGNORED
    assert stored.reason == "repository someone/else is not managed here"
    assert stored.repository == "someone/else"
    assert callbacks == []
    assert jobs.process_pending() == 0
    assert Runner.objects.get(name="r1").github_busy is False
    assert not WorkflowJob.objects.exists()


@pytest.mark.django_db
def test_repository_names_compare_case_insensitively_and_include_environments(
    django_capture_on_commit_callbacks: Any,
) -> None:
    Environment.objects.create(
        name="docs", repository="acme/docs-site", workflow_file="deploy.yml"
    )
    with django_capture_on_commit_callbacks() as callbacks:
        assert post(Client(), job_payload(repo="ACME/Deploy")).status_code == 202
        assert post(Client(), job_payload(8, repo="acme/docs-site")).status_code == 202
    assert len(callbacks) == 2
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {
        WebhookDelivery.Outcome.PENDING
    }


@pytest.mark.django_db
def test_organization_jobs_move_runner_busy_flags_but_runs_need_our_repository(
    settings: Any,
) -> None:
    settings.GITHUB_ORGANIZATION = "acme"
    Runner.objects.create(name="org-runner", github_busy=False)
    job = post(
        Client(),
        job_payload(status="in_progress", repo="acme/other", runner_name="org-runner"),
    )
    run = post(
        Client(),
        {
            "action": "requested",
            "repository": repository("acme/other"),
            "workflow_run": {"id": 5, "name": "CI", "display_title": "CI"},
        },
        event="workflow_run",
    )
    assert job.status_code == 202 and job.json()["status"] == "accepted"
    assert run.json()["status"] == "ignored"
    delivery = WebhookDelivery.objects.get(event="workflow_job")
    assert jobs.process_delivery(delivery.pk) is True
    assert Runner.objects.get(name="org-runner").github_busy is True
    delivery.refresh_from_db()
    assert delivery.outcome == WebhookDelivery.Outcome.MATCHED


@pytest.mark.django_db
def test_get_is_not_allowed() -> None:
    assert Client().get("/github/webhook").status_code == 405


@pytest.mark.django_db
def test_processing_records_the_job_once() -> None:
    post(Client(), job_payload(status="queued"))
    delivery = WebhookDelivery.objects.get()
    assert jobs.process_delivery(delivery.pk) is True
    assert jobs.process_delivery(delivery.pk) is False
    job = WorkflowJob.objects.get()
    assert job.status == "queued"
    assert job.labels == ["self-hosted", "prod-primary-1"]
    delivery.refresh_from_db()
    # No deploy watches run 99 and no runner of that name is registered.
    assert delivery.outcome == WebhookDelivery.Outcome.UNMATCHED
    assert "run 99 is not a deploy" in delivery.reason
    assert delivery.github_run_id == 99


@pytest.mark.django_db
def test_a_job_on_a_registered_runner_is_matched() -> None:
    Runner.objects.create(name="prod-primary-1")
    post(Client(), job_payload(status="queued"))
    delivery = WebhookDelivery.objects.get()
    jobs.process_delivery(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.outcome == WebhookDelivery.Outcome.MATCHED
    assert delivery.reason == ""


@pytest.mark.django_db
def test_a_payload_of_the_wrong_shape_fails_at_once_with_its_error() -> None:
    payload = job_payload()
    del payload["workflow_job"]["id"]
    post(Client(), payload)
    delivery = WebhookDelivery.objects.get()
    assert jobs.process_delivery(delivery.pk) is True
    delivery.refresh_from_db()
    assert delivery.outcome == WebhookDelivery.Outcome.FAILED
    assert delivery.error == "KeyError: 'id'"
    assert delivery.processed_at is not None
    assert not WorkflowJob.objects.exists()
    assert jobs.process_pending() == 0


@pytest.mark.django_db
def test_late_in_progress_event_does_not_undo_completion() -> None:
    completed = job_payload(
        status="completed", conclusion="success", runner_name="prod-primary-1"
    )
    in_progress = job_payload(status="in_progress", runner_name="prod-primary-1")
    for payload in (completed, in_progress):
        post(Client(), payload)
    for delivery in WebhookDelivery.objects.order_by("pk"):
        jobs.process_delivery(delivery.pk)
    job = WorkflowJob.objects.get()
    assert job.status == "completed"
    assert job.conclusion == "success"
    assert job.runner_name == "prod-primary-1"


@pytest.mark.django_db
def test_pending_deliveries_are_processed_by_the_sweep() -> None:
    post(Client(), job_payload(status="in_progress", runner_name="r1"))
    WebhookDelivery.objects.update(received_at="2026-01-01T00:00:00Z")
    assert jobs.process_pending() == 1
    assert WorkflowJob.objects.get().runner_name == "r1"


@pytest.mark.django_db
def test_deliveries_are_pruned_after_the_retention(settings: Any) -> None:
    settings.WEBHOOK_RETENTION_DAYS = 7
    now = timezone.now()
    for age_days in (1, 6, 8, 30):
        WebhookDelivery.objects.create(
            delivery_id=str(uuid.uuid4()),
            event="workflow_job",
            payload={},
            received_at=now - timedelta(days=age_days),
        )
    WebhookRedelivery.objects.create(
        guid="old",
        github_delivery_id=1,
        last_requested_at=now - timedelta(days=8),
    )
    WebhookRedelivery.objects.create(guid="new", github_delivery_id=2)

    assert jobs.prune_deliveries(now, batch=1) == 2

    ages = sorted((now - d.received_at).days for d in WebhookDelivery.objects.all())
    assert ages == [1, 6]
    assert list(WebhookRedelivery.objects.values_list("guid", flat=True)) == ["new"]


@pytest.mark.django_db
def test_the_recovery_and_retention_tasks_are_scheduled() -> None:
    tasks = dict(
        PeriodicTask.objects.filter(
            task__in=[
                "deploys.tasks.recover_webhooks",
                "deploys.tasks.prune_webhook_deliveries",
            ]
        ).values_list("task", "interval__every")
    )
    assert tasks == {
        "deploys.tasks.recover_webhooks": 5,
        "deploys.tasks.prune_webhook_deliveries": 1,
    }
