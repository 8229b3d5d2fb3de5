"""POST /heartbeat: token auth, fact validation, one indexed write."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from runners.models import Flag, Runner
from tests.clients import call_wsgi
from tests.factories import runner_with_token

pytestmark = pytest.mark.django_db

FACTS = {
    "runner_version": "2.328.0",
    "disk_free_bytes": 50 * 2**30,
    "disk_total_bytes": 100 * 2**30,
    "load1": 0.42,
    "cpus": 4,
    "uptime_seconds": 3600,
}


@pytest.fixture
def client() -> Client:
    # Real runner hosts never have a CSRF token; the endpoint must not need one.
    return Client(enforce_csrf_checks=True)


def beat(client: Client, token: str | None, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body or {})
    return client.post(
        "/heartbeat", data=data, content_type="application/json", headers=headers
    )


def test_heartbeat_records_time_deadline_and_facts_in_one_query(
    client: Client, django_assert_num_queries: Any
) -> None:
    runner, token = runner_with_token()
    before = timezone.now()
    with django_assert_num_queries(1):
        response = beat(client, token, FACTS)
    assert response.status_code == 204
    assert "Set-Cookie" not in response.headers
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is not None
    assert runner.last_heartbeat_at >= before
    assert runner.heartbeat_deadline == runner.last_heartbeat_at + timedelta(
        seconds=settings.HEARTBEAT_STALE_AFTER
    )
    assert runner.first_seen_at == runner.last_heartbeat_at
    assert runner.facts == FACTS
    assert runner.facts_problems == 0


def test_first_seen_is_kept_on_later_heartbeats(client: Client) -> None:
    first = timezone.now() - timedelta(days=3)
    runner, token = runner_with_token(first_seen_at=first)
    assert beat(client, token).status_code == 204
    runner.refresh_from_db()
    assert runner.first_seen_at == first
    assert runner.facts == {}


def test_low_disk_and_high_load_facts_are_flagged(client: Client) -> None:
    runner, token = runner_with_token()
    facts = {**FACTS, "disk_free_bytes": 5 * 2**30, "load1": 9.5}
    assert beat(client, token, facts).status_code == 204
    runner.refresh_from_db()
    assert runner.facts_problems == Flag.DISK_LOW | Flag.LOAD_HIGH


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer rhb_wrong", "Token {token}", "Basic {token}"],
)
def test_missing_or_wrong_token_is_401_and_writes_nothing(
    client: Client, authorization: str | None
) -> None:
    runner, token = runner_with_token()
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=token)
    response = client.post(
        "/heartbeat", data="{}", content_type="application/json", headers=headers
    )
    assert response.status_code == 401
    assert "error" in response.json()
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is None


def test_revoked_and_rotated_tokens_stop_working(client: Client) -> None:
    runner, old = runner_with_token()
    new = runner.issue_heartbeat_token("ada-admin")
    assert beat(client, old).status_code == 401
    assert beat(client, new).status_code == 204
    runner.revoke_heartbeat_token("ada-admin")
    assert beat(client, new).status_code == 401


def test_removed_runner_cannot_heartbeat(client: Client) -> None:
    runner, token = runner_with_token(removed_at=timezone.now())
    assert beat(client, token).status_code == 401
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "body is not valid JSON"),
        ("[1, 2]", "body must be a JSON object"),
        ({"disk_free": 1, "colour": "red"}, "unknown field(s): colour, disk_free"),
        ({"runner_version": 2}, "runner_version must be a string"),
        ({"runner_version": "x" * 65}, "runner_version must be a string"),
        ({"disk_free_bytes": -1}, "disk_free_bytes must be a non-negative integer"),
        ({"disk_total_bytes": 1.5}, "disk_total_bytes must be a non-negative integer"),
        ({"load1": "high"}, "load1 must be a non-negative number"),
        ({"load1": -0.1}, "load1 must be a non-negative number"),
        ({"cpus": 0}, "cpus must be a positive integer"),
        ({"cpus": True}, "cpus must be a positive integer"),
        ({"uptime_seconds": None}, "uptime_seconds must be a non-negative integer"),
    ],
)
def test_malformed_facts_are_400_naming_the_field(
    client: Client, body: Any, message: str
) -> None:
    runner, token = runner_with_token()
    data = body if isinstance(body, str) else json.dumps(body)
    response = beat(client, token, data)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is None


def test_oversized_body_is_refused(client: Client) -> None:
    runner, token = runner_with_token()
    response = beat(client, token, json.dumps({"runner_version": "x" * 5000}))
    assert response.status_code == 413
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is None


def test_only_post_is_allowed(client: Client) -> None:
    _, token = runner_with_token()
    response = client.get("/heartbeat", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_token_is_stored_only_as_a_digest() -> None:
    runner, token = runner_with_token()
    runner.refresh_from_db()
    assert token.startswith("rhb_")
    assert runner.heartbeat_token_digest is not None
    assert token not in runner.heartbeat_token_digest
    assert len(runner.heartbeat_token_digest) == 64


def test_heartbeat_is_answered_before_the_other_middleware(client: Client) -> None:
    runner, token = runner_with_token()
    response = beat(client, token, FACTS)
    assert response.status_code == 204
    # Headers every other response gets from the security and request-id layers.
    assert "X-Frame-Options" not in response.headers
    assert "X-Request-ID" not in response.headers
    other = client.get("/healthz")
    assert "X-Frame-Options" in other.headers


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_health_check_ping_is_replaced_by_a_retry_on_a_dead_connection(
    client: Client,
) -> None:
    from django.db import connection

    runner, token = runner_with_token()
    if connection.vendor != "postgresql":
        pytest.skip("SQLite connections do not die")
    # Kill the kept connection behind Django's back, as a database restart would.
    raw = connection.connection
    assert raw is not None
    raw.close()
    setattr(connection, "health_check_done", False)  # noqa: B010 - a new request
    assert beat(client, token).status_code == 204
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is not None


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_wsgi_front_door_records_heartbeats_and_refuses_bad_ones() -> None:
    runner, token = runner_with_token()
    status, headers, content = call_wsgi(
        "/heartbeat", token=token, body=json.dumps(FACTS).encode()
    )
    assert (status, content) == ("204 No Content", b"")
    runner.refresh_from_db()
    assert runner.facts == FACTS
    beaten = runner.last_heartbeat_at

    status, headers, content = call_wsgi("/heartbeat", token="rhb_nope")
    assert status == "401 Unauthorized"
    assert json.loads(content) == {"error": "unknown or revoked runner token"}
    status, _, content = call_wsgi("/heartbeat", token=token, body=b'{"cpus": -1}')
    assert status == "400 Bad Request"
    assert json.loads(content)["error"] == "cpus must be a positive integer"
    status, headers, _ = call_wsgi("/heartbeat", method="GET", token=token)
    assert (status, headers["Allow"]) == ("405 Method Not Allowed", "POST")
    status, _, _ = call_wsgi("/heartbeat", token=token, body=b"x" * 5000)
    assert status == "413 Content Too Large"
    runner.refresh_from_db()
    assert runner.last_heartbeat_at == beaten


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_wsgi_front_door_passes_other_requests_to_django() -> None:
    status, headers, content = call_wsgi("/healthz", method="GET")
    assert status.startswith("200")
    assert json.loads(content) == {"status": "ok"}
    assert "X-Request-ID" in headers


# The interval answered to agents that follow it ---------------------------------------


def deadline_seconds(runner: Runner) -> float:
    assert runner.heartbeat_deadline and runner.last_heartbeat_at
    return (runner.heartbeat_deadline - runner.last_heartbeat_at).total_seconds()


def follow(client: Client, token: str) -> Any:
    return client.post(
        "/heartbeat",
        data=json.dumps(FACTS),
        content_type="application/json",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Heartbeat-Follow-Interval": "1",
        },
    )


def test_an_agent_that_follows_is_told_the_normal_interval(
    client: Client, django_assert_num_queries: Any
) -> None:
    runner, token = runner_with_token()
    with django_assert_num_queries(1):
        response = follow(client, token)
    assert response.status_code == 204
    assert response.headers["X-Heartbeat-Interval"] == str(settings.HEARTBEAT_INTERVAL)
    runner.refresh_from_db()
    assert deadline_seconds(runner) == settings.HEARTBEAT_STALE_AFTER


def test_a_runner_holding_a_deploy_is_told_to_beat_faster_with_a_shorter_deadline(
    client: Client, django_assert_num_queries: Any
) -> None:
    runner, token = runner_with_token(holds_deploy=True)
    with django_assert_num_queries(1):
        response = follow(client, token)
    assert response.status_code == 204
    assert response.headers["X-Heartbeat-Interval"] == str(
        settings.HEARTBEAT_DEPLOY_INTERVAL
    )
    runner.refresh_from_db()
    assert deadline_seconds(runner) == settings.HEARTBEAT_DEPLOY_STALE_AFTER


def test_an_agent_that_does_not_follow_keeps_the_normal_deadline(
    client: Client,
) -> None:
    runner, token = runner_with_token(holds_deploy=True)
    response = beat(client, token, FACTS)
    assert response.status_code == 204
    assert "X-Heartbeat-Interval" not in response.headers
    runner.refresh_from_db()
    assert deadline_seconds(runner) == settings.HEARTBEAT_STALE_AFTER


def test_wsgi_front_door_answers_the_interval() -> None:
    _, token = runner_with_token(holds_deploy=True)
    status, headers, _ = call_wsgi(
        "/heartbeat", token=token, extra={"HTTP_X_HEARTBEAT_FOLLOW_INTERVAL": "1"}
    )
    assert status == "204 No Content"
    assert headers["X-Heartbeat-Interval"] == str(settings.HEARTBEAT_DEPLOY_INTERVAL)
