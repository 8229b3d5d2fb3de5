"""/api/v1/runners/: list and detail with filters, drain/undrain, samples and events,
heartbeat token rotation, and their place in the OpenAPI schema."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from controlplane.models import AuditEvent
from deploys.models import Environment
from runners.models import HealthSample, Reason, Runner, RunnerEvent, State
from tests.factories import make_runner

pytestmark = pytest.mark.django_db

URL = "/api/v1/runners/"

RUNNER_FIELDS = {
    "id",
    "name",
    "github_id",
    "labels",
    "os",
    "host",
    "github_status",
    "github_busy",
    "github_seen_at",
    "github_fresh",
    "removed",
    "removed_at",
    "last_heartbeat_at",
    "heartbeat_fresh",
    "facts",
    "exporter_url",
    "exporter_ok",
    "exporter_checked_at",
    "exporter_detail",
    "state",
    "reason",
    "reasons",
    "runbook",
    "state_since",
    "environments",
    "drained",
    "drained_reason",
    "drained_by",
    "drained_at",
    "trusted",
    "trusted_until",
    "trusted_by",
    "trusted_reason",
    "eligible",
    "ineligibility_reasons",
    "eligibility",
    "first_seen_at",
    "runner_version",
    "runner_version_source",
    "version_outdated",
    "version_note",
    "missing_name_label",
}


def token_client(user: User) -> Client:
    _, token = AuthToken.objects.create(user, timedelta(days=1))
    return Client(headers={"Authorization": f"Token {token}"})


def names(body: dict[str, Any]) -> list[str]:
    return [r["name"] for r in body["results"]]


# List and detail ------------------------------------------------------------------------


def test_list_shows_each_runner_with_explicit_fields_and_never_its_token(
    viewer: User,
) -> None:
    now = timezone.now()
    runner = make_runner(
        name="linux-prod-1",
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        labels=["self-hosted", "linux"],
        heartbeat_deadline=now - timedelta(seconds=1),
        last_heartbeat_at=now - timedelta(seconds=21),
        github_status="online",
        github_seen_at=now,
    )
    token = runner.issue_heartbeat_token("ada-admin")

    response = token_client(viewer).get(URL)

    body = response.json()
    assert response.status_code == 200
    assert body["count"] == 1
    item = body["results"][0]
    assert set(item) == RUNNER_FIELDS
    assert item["state"] == "unhealthy"
    assert item["reason"] == "heartbeat_stale"
    assert item["runbook"] == "/runbooks/runner-heartbeat-stale/"
    assert item["heartbeat_fresh"] is False and item["github_fresh"] is True
    assert item["eligible"] is False
    assert token not in response.content.decode()
    assert runner.heartbeat_token_digest
    assert runner.heartbeat_token_digest not in response.content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["a-ok", "b-stale", "c-disk"]),
        ({"state": "healthy"}, ["a-ok"]),
        ({"reason": "disk_low"}, ["c-disk"]),
        ({"label": "gpu"}, ["c-disk"]),
        ({"drained": "true"}, ["a-ok"]),
        ({"drained": "false"}, ["b-stale", "c-disk"]),
        ({"removed": "true"}, ["d-removed"]),
        ({"removed": "any"}, ["a-ok", "b-stale", "c-disk", "d-removed"]),
        ({"q": "disk"}, ["c-disk"]),
        ({"ordering": "-name"}, ["c-disk", "b-stale", "a-ok"]),
        ({"ordering": "state"}, ["c-disk", "a-ok", "b-stale"]),
        ({"limit": 1, "offset": 1}, ["b-stale"]),
    ],
)
def test_list_filters_orders_and_pages(
    viewer: User, query: dict[str, Any], expected: list[str]
) -> None:
    make_runner(name="a-ok", state=State.HEALTHY, drained=True, labels=["linux"])
    make_runner(name="b-stale", state=State.UNHEALTHY, reason=Reason.HEARTBEAT_STALE)
    make_runner(
        name="c-disk", state=State.DEGRADED, reason=Reason.DISK_LOW, labels=["GPU"]
    )
    make_runner(name="d-removed", removed_at=timezone.now())

    body = token_client(viewer).get(URL, query).json()

    assert names(body) == expected


def test_an_unknown_filter_value_is_a_400_naming_the_parameter(viewer: User) -> None:
    response = token_client(viewer).get(URL, {"state": "sparkly"})

    assert response.status_code == 400
    assert "state" in response.json()


def test_detail_is_by_name_and_finds_removed_runners(viewer: User) -> None:
    make_runner(name="gone.example", removed_at=timezone.now())

    response = token_client(viewer).get(f"{URL}gone.example/")

    assert response.status_code == 200
    assert response.json()["removed"] is True
    assert token_client(viewer).get(f"{URL}nope/").status_code == 404


def test_list_query_count_does_not_grow_with_the_fleet(
    viewer: User, django_assert_num_queries: Any
) -> None:
    client = token_client(viewer)
    for size in (3, 120):
        Runner.objects.all().delete()
        Runner.objects.bulk_create(
            Runner(name=f"bulk-{i:04d}", labels=["linux"]) for i in range(size)
        )
        # knox's token lookups (2), role groups, the count, the page, its pools.
        with django_assert_num_queries(6):
            response = client.get(URL, {"label": "linux"})
        assert response.json()["count"] == size


def test_runners_show_and_filter_by_their_environment_pools(viewer: User) -> None:
    primary = make_runner(name="prod-1")
    secondary = make_runner(name="prod-2")
    make_runner(name="stray")
    production = Environment.objects.create(name="production", repository="acme/app")
    staging = Environment.objects.create(name="staging", repository="acme/app")
    production.set_pool([primary, secondary])
    staging.set_pool([secondary])

    body = token_client(viewer).get(URL, {"environment": "production"}).json()

    assert names(body) == ["prod-1", "prod-2"]
    assert body["results"][1]["environments"] == [
        {"environment": "production", "position": 1},
        {"environment": "staging", "position": 0},
    ]


# Drain and undrain ----------------------------------------------------------------------


def test_sre_drains_a_runner_with_a_reason_and_gets_202_with_it(sre: User) -> None:
    runner = make_runner(name="linux-prod-1", state=State.HEALTHY)

    response = token_client(sre).post(
        f"{URL}linux-prod-1/drain/",
        {"reason": "disk swap"},
        content_type="application/json",
    )

    assert response.status_code == 202
    body = response.json()
    assert body["name"] == "linux-prod-1"
    assert body["drained"] is True and body["drained_reason"] == "disk swap"
    assert body["eligible"] is False
    runner.refresh_from_db()
    assert runner.drained and runner.drained_by == "sam-sre"
    assert AuditEvent.objects.filter(action="runner.drain", actor=sre).count() == 1
    assert runner.events.filter(kind=RunnerEvent.Kind.DRAINED).count() == 1


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}])
def test_drain_without_a_reason_is_a_400_naming_the_field(
    sre: User, body: dict[str, str]
) -> None:
    runner = make_runner(name="linux-prod-1")

    response = token_client(sre).post(
        f"{URL}linux-prod-1/drain/", body, content_type="application/json"
    )

    assert response.status_code == 400
    assert list(response.json()) == ["reason"]
    runner.refresh_from_db()
    assert not runner.drained


def test_viewer_may_not_drain(viewer: User) -> None:
    runner = make_runner(name="linux-prod-1")

    response = token_client(viewer).post(
        f"{URL}linux-prod-1/drain/", {"reason": "x"}, content_type="application/json"
    )

    assert response.status_code == 403
    assert response.json()["detail"] == "This needs the sre or admin role."
    runner.refresh_from_db()
    assert not runner.drained


def test_undrain_puts_the_runner_back(sre: User) -> None:
    runner = make_runner(name="linux-prod-1", state=State.HEALTHY)
    runner.drain("sam-sre", "maintenance")

    response = token_client(sre).post(f"{URL}linux-prod-1/undrain/")

    assert response.status_code == 202
    assert response.json()["drained"] is False
    assert response.json()["eligible"] is True
    runner.refresh_from_db()
    assert not runner.drained
    assert AuditEvent.objects.filter(action="runner.undrain").count() == 1


# History ------------------------------------------------------------------------------------


def test_samples_and_events_are_paginated_newest_first(viewer: User) -> None:
    runner = make_runner(name="linux-prod-1")
    other = make_runner(name="linux-prod-2")
    now = timezone.now()
    for i in range(3):
        HealthSample.objects.create(
            runner=runner,
            source=HealthSample.Source.HEARTBEAT,
            ok=bool(i % 2),
            observed_at=now - timedelta(minutes=i),
        )
        RunnerEvent.objects.create(
            runner=runner,
            kind=RunnerEvent.Kind.STATE_CHANGE,
            from_state=State.UNKNOWN,
            to_state=State.UNHEALTHY,
            reasons=[Reason.HEARTBEAT_STALE],
            created_at=now - timedelta(minutes=i),
        )
    HealthSample.objects.create(runner=other, source="github", ok=True)
    client = token_client(viewer)

    samples = client.get(f"{URL}linux-prod-1/samples/", {"limit": 2}).json()
    events = client.get(f"{URL}linux-prod-1/events/", {"limit": 2, "offset": 2}).json()

    assert samples["count"] == 3 and len(samples["results"]) == 2
    times = [s["observed_at"] for s in samples["results"]]
    assert times == sorted(times, reverse=True)
    assert set(samples["results"][0]) == {
        "id",
        "source",
        "ok",
        "observed_at",
        "latency_ms",
        "detail",
    }
    assert events["count"] == 3 and len(events["results"]) == 1
    assert events["results"][0]["reasons"] == ["heartbeat_stale"]
    assert events["results"][0]["runbook"] == "/runbooks/runner-heartbeat-stale/"


# Token rotation ---------------------------------------------------------------------------


def test_admin_rotates_the_heartbeat_token_and_sees_it_once(
    admin_user: User, client: Client
) -> None:
    runner = make_runner(name="linux-prod-1")
    old = runner.issue_heartbeat_token("ada-admin")
    api = token_client(admin_user)

    response = api.post(f"{URL}linux-prod-1/rotate-token/")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    new = response.json()["token"]
    assert response.json()["name"] == "linux-prod-1"
    assert new != old

    # The new token heartbeats, the old one no longer does.
    def beat(token: str) -> int:
        return client.post(
            "/heartbeat", "{}", "application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        ).status_code

    assert beat(new) == 204
    assert beat(old) == 401
    # It is never shown again, nor kept anywhere readable.
    detail = api.get(f"{URL}linux-prod-1/").content.decode()
    assert new not in detail
    rotation = AuditEvent.objects.filter(action="runner.token_issue").latest("pk")
    assert rotation.actor_name == "ada-admin"
    assert new not in str(rotation.detail)


def test_sre_may_not_rotate_tokens(sre: User) -> None:
    runner = make_runner(name="linux-prod-1")
    digest = runner.heartbeat_token_digest

    response = token_client(sre).post(f"{URL}linux-prod-1/rotate-token/")

    assert response.status_code == 403
    assert response.json()["detail"] == "This needs the admin role."
    runner.refresh_from_db()
    assert runner.heartbeat_token_digest == digest


# Schema ----------------------------------------------------------------------------------------


def test_every_runner_endpoint_is_in_the_openapi_schema(viewer: User) -> None:
    schema = token_client(viewer).get("/api/schema/", {"format": "json"}).json()

    paths = schema["paths"]
    params = {p["name"] for p in paths["/api/v1/runners/"]["get"]["parameters"]}
    assert params == {
        "drained",
        "environment",
        "label",
        "limit",
        "offset",
        "ordering",
        "q",
        "reason",
        "removed",
        "state",
        "version",
        "version_outdated",
        "missing_name_label",
    }
    assert "202" in paths["/api/v1/runners/{name}/drain/"]["post"]["responses"]
    assert "400" in paths["/api/v1/runners/{name}/drain/"]["post"]["responses"]
    assert "202" in paths["/api/v1/runners/{name}/undrain/"]["post"]["responses"]
    assert "200" in paths["/api/v1/runners/{name}/rotate-token/"]["post"]["responses"]
    for history in ("samples", "events"):
        params = {
            p["name"]
            for p in paths[f"/api/v1/runners/{{name}}/{history}/"]["get"]["parameters"]
        }
        assert params == {"name", "limit", "offset"}
    assert "/api/v1/runners/{name}/" in paths
