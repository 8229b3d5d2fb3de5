"""``/sd/exporters``: Prometheus HTTP service discovery of the runner exporters,
behind a bearer token."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone

from controlplane import throttle
from controlplane.models import AuditEvent, AuthFailureCount
from runners.models import State
from runners.sd import exporter_target
from tests.factories import make_env, make_runner

pytestmark = pytest.mark.django_db

TOKEN = "sd-token-0123456789abcdef"  # noqa: S105


@pytest.fixture(autouse=True)
def _sd_token(settings: Any) -> Iterator[None]:
    settings.SD_BEARER_TOKEN = TOKEN
    settings.SD_BEARER_TOKEN_FILE = ""
    throttle.forget_local_locks()
    yield
    throttle.forget_local_locks()


def discover(token: str | None = TOKEN) -> Any:
    if token is None:
        return Client().get("/sd/exporters")
    return Client().get("/sd/exporters", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.parametrize(
    ("url", "target", "labels"),
    [
        ("http://build-1.example:9100/metrics", "build-1.example:9100", {}),
        ("http://build-1.example:9100", "build-1.example:9100", {}),
        ("http://10.0.0.7/metrics", "10.0.0.7:80", {}),
        ("https://build-1.example/metrics", "build-1.example:443", {"__scheme__": "https"}),
        (
            "http://sim.local:8080/_sim/exporter/r-1/metrics?collect=cpu",
            "sim.local:8080",
            {
                "__metrics_path__": "/_sim/exporter/r-1/metrics",
                "__param_collect": "cpu",
            },
        ),
        ("http://[fd00::7]:9100/metrics", "[fd00::7]:9100", {}),
        # Credentials are never handed to Prometheus through discovery.
        ("http://user:secret@build-1.example:9100/metrics", "build-1.example:9100", {}),
    ],
)  # fmt: skip
def test_exporter_urls_become_targets_with_the_labels_that_scrape_them(
    url: str, target: str, labels: dict[str, str]
) -> None:
    assert exporter_target(url) == (target, labels)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://build-1.example/metrics",
        "http:///metrics",
        "http://h:99999/",
        # Not a label name: Prometheus would refuse the whole answer.
        "http://h:9100/metrics?module-name=x",
    ],
)
def test_urls_prometheus_cannot_scrape_are_left_out(url: str) -> None:
    assert exporter_target(url) is None


def test_each_active_runner_with_an_exporter_is_a_target_with_its_labels() -> None:
    primary = make_runner(
        "build-1", exporter_url="http://build-1.example:9100/metrics", state="healthy"
    )
    secondary = make_runner(
        "build-2",
        exporter_url="https://build-2.example:9100/metrics",
        state=State.DEGRADED,
    )
    make_runner("build-3", exporter_url="http://build-3.example:9100/metrics")
    make_runner("no-exporter")
    make_runner(
        "gone",
        exporter_url="http://gone.example:9100/metrics",
        removed_at=timezone.now() - timedelta(days=1),
    )
    make_env("production", primary, secondary)
    make_env("staging", secondary)

    response = discover()

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == [
        {
            "targets": ["build-1.example:9100"],
            "labels": {
                "runner": "build-1",
                "runner_state": "healthy",
                "environment": "production",
                "pool_position": "0",
                "environments": ",production,",
            },
        },
        {
            "targets": ["build-2.example:9100"],
            "labels": {
                "__scheme__": "https",
                "runner": "build-2",
                "runner_state": "degraded",
                # Primary of staging ranks above secondary of production.
                "environment": "staging",
                "pool_position": "0",
                "environments": ",production,staging,",
            },
        },
        {
            "targets": ["build-3.example:9100"],
            "labels": {"runner": "build-3", "runner_state": "unknown"},
        },
    ]


def test_an_empty_fleet_is_an_empty_list() -> None:
    response = discover()
    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize("size", [3, 60])
def test_two_queries_whatever_the_fleet_size(
    size: int, django_assert_num_queries: Any
) -> None:
    runners = [
        make_runner(f"r-{i:03d}", exporter_url=f"http://r-{i:03d}.example:9100/")
        for i in range(size)
    ]
    make_env("production", *runners[:2])
    make_env("staging", *runners[1:3])
    with django_assert_num_queries(2):
        response = discover()
    assert len(response.json()) == size


def test_without_a_token_the_answer_is_401_with_a_challenge() -> None:
    response = discover(token=None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.json()["error"]


def test_a_wrong_token_is_refused_counted_and_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-sd-token-at-all"
    make_runner("build-1", exporter_url="http://build-1.example:9100/metrics")
    response = discover(wrong)
    assert response.status_code == 401
    assert "wrong service discovery token" in response.json()["error"]
    assert b"build-1" not in response.content
    failures = AuthFailureCount.objects.get(scope="sd-token-address")
    assert failures.key == "127.0.0.1" and failures.failures == 1
    for secret in (wrong, TOKEN):
        assert secret not in caplog.text
        assert secret.encode() not in response.content


def test_an_address_sending_wrong_tokens_is_locked_out_and_audited(
    settings: Any,
) -> None:
    settings.TOKEN_MAX_FAILURES_PER_ADDRESS = 3
    statuses = [discover(f"wrong-token-number-{i}").status_code for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    locked = discover("wrong-token-number-9")
    assert "Too many rejected tokens" in locked.json()["error"]
    assert int(locked["Retry-After"]) > 0
    assert AuditEvent.objects.filter(action="sd_token.lockout").count() == 1
    # Prometheus behind the same address keeps its targets.
    assert discover().status_code == 200


def test_discovery_is_off_until_a_token_is_configured(settings: Any) -> None:
    settings.SD_BEARER_TOKEN = ""
    response = discover("anything-at-all-here")
    assert response.status_code == 403
    assert "SD_BEARER_TOKEN_FILE" in response.json()["error"]
    assert not AuthFailureCount.objects.exists()


def test_the_token_file_is_read_on_each_request_so_rotation_needs_no_restart(
    settings: Any, tmp_path: Path
) -> None:
    token_file = tmp_path / "sd_token"
    token_file.write_text(TOKEN + "\n")
    settings.SD_BEARER_TOKEN_FILE = str(token_file)
    settings.SD_BEARER_TOKEN = "ignored-when-the-file-is-set"
    assert discover().status_code == 200
    token_file.write_text("rotated-token-fedcba9876543210")
    assert discover().status_code == 401
    assert discover("rotated-token-fedcba9876543210").status_code == 200


@pytest.mark.parametrize("content", [None, "short"])
def test_an_unusable_token_file_answers_503_saying_why(
    content: str | None, settings: Any, tmp_path: Path
) -> None:
    token_file = tmp_path / "sd_token"
    if content is not None:
        token_file.write_text(content)
    settings.SD_BEARER_TOKEN_FILE = str(token_file)
    response = discover()
    assert response.status_code == 503
    assert "SD_BEARER_TOKEN_FILE" in response.json()["error"]
    assert TOKEN not in response.content.decode()


def test_only_get_is_answered() -> None:
    response = Client().post("/sd/exporters", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


def test_a_short_token_in_the_environment_stops_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runners import sd_conf

    monkeypatch.setenv("SD_BEARER_TOKEN", "short")
    try:
        with pytest.raises(ImproperlyConfigured, match="SD_BEARER_TOKEN must be"):
            importlib.reload(sd_conf)
    finally:
        monkeypatch.undo()
        importlib.reload(sd_conf)
