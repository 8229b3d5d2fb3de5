"""Rejected API and heartbeat tokens are throttled per client address: after
TOKEN_MAX_FAILURES_PER_ADDRESS 401s the address's wrong tokens get 429, while good
tokens from it keep working (and a good heartbeat stays one query)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone
from knox.models import AuthToken

from controlplane import throttle
from controlplane.models import AuditEvent, AuthFailureCount
from tests.clients import call_wsgi
from tests.factories import runner_with_token

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("_forget_local_locks"),
]

LIMIT = 30  # TOKEN_MAX_FAILURES_PER_ADDRESS's default


@pytest.fixture
def _forget_local_locks() -> Iterator[None]:
    throttle.forget_local_locks()
    yield
    throttle.forget_local_locks()


def api_get(token: str, address: str = "10.0.0.1") -> Any:
    return Client(REMOTE_ADDR=address).get(
        "/api/v1/auth/whoami", headers={"Authorization": f"Token {token}"}
    )


def beat(token: str, address: str = "10.0.0.1") -> Any:
    return Client(REMOTE_ADDR=address).post(
        "/heartbeat",
        data="{}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def test_repeated_bad_api_tokens_from_one_address_get_429(sre: User) -> None:
    _, good = AuthToken.objects.create(user=sre)
    answers = [api_get("bad-token").status_code for _ in range(LIMIT)]

    locked = api_get("bad-token")
    elsewhere = api_get("bad-token", address="10.0.0.2")
    still_good = api_get(good)

    assert answers == [401] * LIMIT
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= 15 * 60
    assert "Too many rejected tokens from this address" in locked.json()["detail"]
    assert elsewhere.status_code == 401
    assert still_good.status_code == 200
    assert still_good.json()["username"] == sre.username


def test_an_api_token_lockout_is_audited_once_without_the_token() -> None:
    for _ in range(LIMIT + 5):
        api_get("secret-guess-123")

    lockouts = AuditEvent.objects.filter(action="api_token.lockout")
    assert lockouts.count() == 1
    assert lockouts[0].detail["remote_addr"] == "10.0.0.1"
    assert "secret-guess-123" not in str(list(AuditEvent.objects.values()))
    assert "secret-guess-123" not in str(list(AuthFailureCount.objects.values()))


def test_requests_without_a_token_are_not_counted() -> None:
    for _ in range(LIMIT + 1):
        Client(REMOTE_ADDR="10.0.0.1").get("/api/v1/auth/whoami")

    assert not AuthFailureCount.objects.exists()


def test_an_api_token_lockout_ends_by_itself() -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(LIMIT):
            api_get("bad")
        assert api_get("bad").status_code == 429
    with time_machine.travel(start + timedelta(minutes=15, seconds=1), tick=False):
        assert api_get("bad").status_code == 401


def test_repeated_bad_heartbeat_tokens_get_429_and_good_ones_still_record(
    django_assert_num_queries: Any,
) -> None:
    runner, token = runner_with_token()
    answers = [beat("rhb_wrong").status_code for _ in range(LIMIT)]

    locked = beat("rhb_wrong")
    with django_assert_num_queries(1):
        good = beat(token)
    # The lock is now known to this process: a further guess costs the UPDATE only.
    with django_assert_num_queries(1):
        again = beat("rhb_wrong")

    assert answers == [401] * LIMIT
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= 15 * 60
    assert "Too many rejected tokens" in locked.json()["error"]
    assert again.status_code == 429
    assert good.status_code == 204
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is not None
    assert beat("rhb_wrong", address="10.0.0.2").status_code == 401
    assert AuditEvent.objects.filter(action="heartbeat.lockout").count() == 1


def test_a_missing_heartbeat_token_counts_as_a_failure() -> None:
    client = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(LIMIT):
        client.post("/heartbeat", data="{}", content_type="application/json")

    assert beat("rhb_wrong").status_code == 429


@override_settings(TOKEN_MAX_FAILURES_PER_ADDRESS=3, TOKEN_LOCKOUT_PERIOD=60)
def test_token_limit_and_period_come_from_settings() -> None:
    for _ in range(3):
        assert beat("rhb_wrong").status_code == 401

    locked = beat("rhb_wrong")

    assert locked.status_code == 429
    assert int(locked["Retry-After"]) <= 60


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@override_settings(TOKEN_MAX_FAILURES_PER_ADDRESS=2)
def test_wsgi_front_door_answers_429_with_retry_after() -> None:
    _, token = runner_with_token()
    for _ in range(2):
        status, _, _ = call_wsgi("/heartbeat", token="rhb_wrong")
        assert status == "401 Unauthorized"

    status, headers, content = call_wsgi("/heartbeat", token="rhb_wrong")
    good, _, _ = call_wsgi("/heartbeat", token=token)

    assert status == "429 Too Many Requests"
    assert int(headers["Retry-After"]) > 0
    assert "Too many rejected tokens" in json.loads(content)["error"]
    assert good == "204 No Content"


def test_rows_whose_window_and_lock_are_over_are_pruned() -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for i in range(5):
            beat("rhb_wrong", address=f"10.0.1.{i}")
        for _ in range(LIMIT):
            beat("rhb_wrong", address="10.0.2.1")  # locked for 15 minutes

    with time_machine.travel(start + timedelta(minutes=11), tick=False):
        beat("rhb_wrong", address="10.0.3.1")

    assert sorted(AuthFailureCount.objects.values_list("key", flat=True)) == [
        "10.0.2.1",
        "10.0.3.1",
    ]


@pytest.mark.skipif(
    "sqlite" in settings.DATABASES["default"]["ENGINE"],
    # Its test database is in memory with a shared cache, where concurrent writers
    # fail with "table is locked" instead of waiting as on the real file.
    reason="needs PostgreSQL (CI's second run)",
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_failures_are_all_counted() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    now = timezone.now()

    def fail_ten_times(_: int) -> None:
        try:
            for _ in range(10):
                throttle.record_failure(
                    "heartbeat-address",
                    "10.0.0.1",
                    now,
                    limit=100,
                    window=60,
                    lockout=60,
                )
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fail_ten_times, range(4)))

    assert AuthFailureCount.objects.get(key="10.0.0.1").failures == 40
