"""Input that used to reach a 500 (or an HTML page): pagination parameters, deeply
nested JSON, oversized bodies. Every answer is a 4xx in DRF's JSON error format."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from knox.models import AuthToken

from controlplane.pagination import MAX_LIMIT, MAX_OFFSET
from controlplane.parsers import MAX_DEPTH, nesting_problem
from deploys.models import DeployAttempt, Environment
from deploys.serializers import DeployAttemptSerializer
from githubsim import Simulator
from rotations.models import SecretRotation, SecretRotationSchedule
from runners.models import Runner
from tests.conftest import logged_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("github")]

LIST_ENDPOINTS = [
    "/api/v1/audit-events/",
    "/api/v1/deploys/",
    "/api/v1/environments/",
    "/api/v1/freeze-windows/",
    "/api/v1/runners/",
    "/api/v1/runners/linux-1/events/",
    "/api/v1/runners/linux-1/samples/",
    "/api/v1/secret-schedules/",
    "/api/v1/secret-schedules/{schedule}/rotations/",
]
DEEP = "[" * 1500 + "]" * 1500


@pytest.fixture
def api(admin_user: User) -> Client:
    _, token = AuthToken.objects.create(admin_user, timedelta(days=1))
    return Client(headers={"Authorization": f"Token {token}"})


@pytest.fixture
def schedule() -> SecretRotationSchedule:
    Runner.objects.create(name="linux-1")
    return SecretRotationSchedule.objects.create(name="DEPLOY_KEY")


def post_json(api: Client, url: str, body: str | bytes) -> Any:
    return api.post(url, body, content_type="application/json")


# Pagination -------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
@pytest.mark.parametrize(
    "query",
    [
        "limit=76222778840409636864",
        "limit=abc",
        "limit=null",
        "limit=",
        "limit=0",
        "limit=-1",
        "limit=1001",
        "limit=1_000",
        "limit=%2010",
        "offset=null",
        "offset=-1",
        "offset=1e3",
        "offset=99999999999999999999999",
    ],
)
def test_bad_limit_or_offset_is_a_400_naming_it(
    api: Client, schedule: SecretRotationSchedule, endpoint: str, query: str
) -> None:
    url = endpoint.format(schedule=schedule.pk)
    response = api.get(f"{url}?{query}")

    assert response.status_code == 400, response.content
    name = query.split("=")[0]
    assert list(response.json()) == [name]


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
def test_list_pages_with_limit_and_offset_within_bounds(
    api: Client, schedule: SecretRotationSchedule, endpoint: str
) -> None:
    url = endpoint.format(schedule=schedule.pk)
    response = api.get(f"{url}?limit={MAX_LIMIT}&offset={MAX_OFFSET}")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["results"] == []


def test_rotation_history_is_a_paginated_list(
    api: Client, schedule: SecretRotationSchedule
) -> None:
    for _ in range(3):
        SecretRotation.objects.create(schedule=schedule, source="external")

    response = api.get(f"/api/v1/secret-schedules/{schedule.pk}/rotations/?limit=2")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3 and len(body["results"]) == 2
    assert body["next"].endswith("limit=2&offset=2")


def test_schema_documents_the_pagination_bounds(api: Client) -> None:
    schema = api.get("/api/schema/", {"format": "json"}).json()

    params = {
        p["name"]: p["schema"]
        for p in schema["paths"]["/api/v1/runners/"]["get"]["parameters"]
    }

    assert params["limit"] == {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
    assert params["offset"] == {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}


# Nested JSON ------------------------------------------------------------------------


def test_nesting_is_counted_outside_strings_only() -> None:
    assert nesting_problem('{"a": "' + "[" * 5000 + '"}') is None
    assert nesting_problem('{"a": "\\"' + "[" * 5000 + '"}') is None
    assert nesting_problem("[" * MAX_DEPTH + "]" * MAX_DEPTH) is None
    assert nesting_problem("[" * (MAX_DEPTH + 1)) is not None
    assert nesting_problem('{"a": ' * 40 + "1" + "}" * 40) is not None


@pytest.mark.parametrize(
    "url",
    ["/api/v1/deploys/", "/api/v1/environments/", "/api/v1/runners/linux-1/drain/"],
)
def test_deeply_nested_json_is_a_400(
    api: Client, schedule: SecretRotationSchedule, url: str
) -> None:
    response = post_json(api, url, DEEP)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "nested deeper than" in response.json()["detail"]


def test_json_nested_within_the_limit_reaches_the_serializer(api: Client) -> None:
    body = {"name": "x", "repository": [[[["acme/deploy"]]]]}

    response = post_json(api, "/api/v1/environments/", json.dumps(body))

    assert response.status_code == 400
    assert "repository" in response.json()
    assert not Environment.objects.exists()


def test_deeply_nested_heartbeat_is_a_400() -> None:
    runner = Runner.objects.create(name="linux-1")
    token = runner.issue_heartbeat_token("ada-admin")

    response = Client().post(
        "/heartbeat",
        DEEP,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 400
    assert "nested deeper than" in response.json()["error"]
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is None


# Body size and media type -----------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/api/v1/environments/", "/api/v1/secret-schedules/", "/api/v1/deploys/"]
)
def test_ten_megabyte_body_is_a_json_413(api: Client, url: str) -> None:
    body = json.dumps({"name": "x" * 10_000_000})

    response = post_json(api, url, body)

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "larger than" in response.json()["detail"]


def test_form_body_with_too_many_fields_is_a_json_400(api: Client) -> None:
    body = "&".join(f"f{n}=1" for n in range(1001))

    response = api.post(
        "/api/v1/secret-schedules/",
        body,
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "more than 1000 form fields"}
    assert not SecretRotationSchedule.objects.exists()


# Schema and behaviour agree ---------------------------------------------------------


def test_schedule_needs_only_a_name_as_the_schema_says(api: Client) -> None:
    schema = api.get("/api/schema/", {"format": "json"}).json()
    request = schema["components"]["schemas"]["SecretScheduleRequest"]

    response = post_json(api, "/api/v1/secret-schedules/", '{"name": "deploy_key"}')

    assert request["required"] == ["name"]
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "DEPLOY_KEY"
    assert response.json()["environment"] is None


@pytest.mark.parametrize(
    ("field", "low", "high"), [("interval_days", 1, 3650), ("warning_days", 0, 3650)]
)
def test_schedule_day_bounds_are_documented_and_enforced(
    api: Client, field: str, low: int, high: int
) -> None:
    schema = api.get("/api/schema/", {"format": "json"}).json()
    documented = schema["components"]["schemas"]["SecretScheduleRequest"]
    documented = documented["properties"][field]

    below = post_json(
        api, "/api/v1/secret-schedules/", json.dumps({"name": "A", field: low - 1})
    )
    above = post_json(
        api, "/api/v1/secret-schedules/", json.dumps({"name": "B", field: high + 1})
    )
    edge = post_json(
        api, "/api/v1/secret-schedules/", json.dumps({"name": "C", field: high})
    )

    assert (documented["minimum"], documented["maximum"]) == (low, high)
    assert (below.status_code, above.status_code, edge.status_code) == (400, 400, 201)
    assert list(below.json()) == [field]


def test_unset_urls_are_null_not_blank(api: Client) -> None:
    Runner.objects.create(name="linux-1")

    body = api.get("/api/v1/runners/linux-1/").json()
    attempt = DeployAttemptSerializer(
        DeployAttempt(number=1, runner=Runner(name="linux-1"), html_url="")
    ).data

    assert body["exporter_url"] is None
    assert attempt["html_url"] is None


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/api/v1/deploys/?created_after=", "created_after"),
        ("/api/v1/freeze-windows/?kind=", "kind"),
        ("/api/v1/runners/?drained=", "drained"),
        ("/api/v1/runners/?drained=null", "drained"),
        ("/api/v1/audit-events/?outcome=", "outcome"),
    ],
)
def test_empty_or_unreadable_filter_values_are_a_400_naming_them(
    api: Client, url: str, name: str
) -> None:
    response = api.get(url)

    assert response.status_code == 400
    assert list(response.json()) == [name]


def test_empty_free_text_filter_is_a_valid_empty_string(api: Client) -> None:
    assert api.get("/api/v1/runners/?q=").status_code == 200


def test_html_filter_forms_still_send_empty_fields(admin_user: User) -> None:
    response = logged_in(admin_user).get("/fleet/?state=&drained=&removed=")

    assert response.status_code == 200


def test_environment_name_in_use_is_a_409(api: Client) -> None:
    Environment.objects.create(name="production", repository="acme/deploy")

    response = post_json(
        api,
        "/api/v1/environments/",
        json.dumps({"name": "production", "repository": "acme/deploy", "pool": []}),
    )

    assert response.status_code == 409
    assert "already exists" in response.json()["name"][0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "KEY", "notes": 3.5}, "notes"),
        ({"name": 7}, "name"),
        ({"name": "KEY", "interval_days": "30"}, "interval_days"),
        ({"name": "KEY", "interval_days": True}, "interval_days"),
        ({"name": "KEY", "required_by": "production"}, "required_by"),
        ({"name": "KEY", "environment": ""}, "environment"),
    ],
)
def test_values_of_the_wrong_json_type_are_a_400_naming_the_field(
    api: Client, body: dict[str, Any], field: str
) -> None:
    response = post_json(api, "/api/v1/secret-schedules/", json.dumps(body))

    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert not SecretRotationSchedule.objects.exists()


def test_drain_refuses_a_non_string_reason(
    api: Client, schedule: SecretRotationSchedule
) -> None:
    response = post_json(api, "/api/v1/runners/linux-1/drain/", '{"reason": 5}')

    assert response.status_code == 400
    assert list(response.json()) == ["reason"]


def test_a_string_padded_past_its_max_length_is_refused_not_trimmed(
    admin_client: Client,
) -> None:
    key = "x" * 290 + " " * 20  # 310 characters as sent, 290 once trimmed

    response = admin_client.post(
        "/api/v1/secret-schedules/import/",
        {"keys": [key]},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "no more than 300 characters" in str(response.json()["keys"])


def test_a_whitespace_import_key_is_a_key_like_any_other(
    admin_client: Client, settings: Any
) -> None:
    with Simulator(seed=5, demo=True) as sim:
        settings.GITHUB_API_URL = sim.url
        settings.GITHUB_TOKEN = "ghp_api_input_test"  # noqa: S105
        response = admin_client.post(
            "/api/v1/secret-schedules/import/",
            {"keys": ["  "]},
            content_type="application/json",
        )

    # The schema allows it (minLength 1): it matches no proposal, so nothing is made.
    assert response.status_code == 201
    assert response.json() == {"created": []}
