"""The GitHub webhook receiver: signatures, dedupe, size cap, processing."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
from django.test import Client

from deploys import jobs
from deploys.models import WebhookDelivery, WorkflowJob
from deploys.webhooks import MAX_BODY_BYTES, signature_is_valid

SECRET = "webhook-test-secret"  # noqa: S105


@pytest.fixture(autouse=True)
def _secret(settings: Any) -> None:
    settings.GITHUB_WEBHOOK_SECRET = SECRET


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def job_payload(job_id: int = 7, status: str = "queued", **job: Any) -> dict[str, Any]:
    return {
        "action": status,
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
def test_ping_is_answered_and_other_events_ignored() -> None:
    assert post(Client(), {"zen": "Keep it simple."}, event="ping").json() == {
        "status": "pong"
    }
    response = post(Client(), {"action": "opened"}, event="issues")
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_malformed_payload_gets_400() -> None:
    response = post(Client(), {"action": "queued"})
    assert response.status_code == 400
    assert "workflow_job" in response.json()["error"]


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
