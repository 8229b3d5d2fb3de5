"""Failed sign-ins are throttled per account and per client address, in the database
(shared by every process), with a lockout message, an audit row, and an expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from controlplane import throttle
from controlplane.models import AuditEvent, AuthFailureCount
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "not-the-password"  # noqa: S105
SRE, VIEWER = "sam-sre", "val-viewer"  # the personas' usernames


@pytest.fixture(autouse=True)
def _fast_hashing(settings: Any) -> None:
    # Dozens of sign-ins per test; the real hasher's cost is not what is tested.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sign_in(username: str, password: str, address: str = "10.0.0.1") -> Client:
    client = Client(REMOTE_ADDR=address)
    client.response = client.post(  # type: ignore[attr-defined]
        "/accounts/login/", {"username": username, "password": password}
    )
    return client


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(
    sre: User,
) -> None:
    for i in range(5):
        client = sign_in(SRE, WRONG, address=f"10.0.0.{i + 1}")
        assert client.response.status_code == 200  # type: ignore[attr-defined]

    client = sign_in(SRE, PASSWORD, address="10.9.9.9")

    response = client.response  # type: ignore[attr-defined]
    assert response.status_code == 429
    assert not signed_in(client)
    assert 0 < int(response["Retry-After"]) <= 15 * 60
    page = response.content.decode()
    assert "Too many failed sign-ins for this account or address" in page
    assert "try again in 15 minutes" in page


def test_a_locked_account_does_not_lock_out_other_accounts(
    sre: User, viewer: User
) -> None:
    for _ in range(5):
        sign_in(SRE, WRONG)

    assert signed_in(sign_in(VIEWER, PASSWORD, address="10.0.0.2"))


def test_one_address_is_locked_after_twenty_failures_across_accounts(
    sre: User, viewer: User
) -> None:
    for i in range(20):
        sign_in(f"nobody-{i}", WRONG, address="192.0.2.7")

    refused = sign_in(VIEWER, PASSWORD, address="192.0.2.7")
    elsewhere = sign_in(VIEWER, PASSWORD, address="192.0.2.8")

    assert refused.response.status_code == 429  # type: ignore[attr-defined]
    assert not signed_in(refused)
    assert signed_in(elsewhere)


def test_the_lockout_ends_by_itself(sre: User) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            sign_in(SRE, WRONG)
        assert not signed_in(sign_in(SRE, PASSWORD))

    with time_machine.travel(start + timedelta(minutes=14), tick=False):
        client = sign_in(SRE, PASSWORD)
        assert "try again in 1 minute." in client.response.content.decode()  # type: ignore[attr-defined]
        assert not signed_in(client)

    with time_machine.travel(start + timedelta(minutes=15, seconds=1), tick=False):
        assert signed_in(sign_in(SRE, PASSWORD))


def test_failures_outside_the_window_do_not_add_up(sre: User) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(4):
            sign_in(SRE, WRONG)
    with time_machine.travel(start + timedelta(minutes=16), tick=False):
        sign_in(SRE, WRONG)
        assert signed_in(sign_in(SRE, PASSWORD))


def test_a_successful_sign_in_clears_the_accounts_failures(sre: User) -> None:
    for _ in range(4):
        sign_in(SRE, WRONG)
    assert signed_in(sign_in(SRE, PASSWORD))

    for _ in range(4):
        sign_in(SRE, WRONG)

    assert signed_in(sign_in(SRE, PASSWORD))


def test_a_lockout_leaves_one_audit_row_without_the_password(sre: User) -> None:
    for _ in range(7):
        sign_in(SRE, "hunter2-secret-guess", address="10.1.1.1")

    lockouts = list(AuditEvent.objects.filter(action="login.lockout"))
    assert len(lockouts) == 1
    row = lockouts[0]
    assert row.outcome == AuditEvent.Outcome.DENIED
    assert row.detail["scope"] == "login-account"
    assert row.detail["username"] == SRE
    assert row.detail["locked_until"]
    refused = AuditEvent.objects.filter(action="session.login", detail__locked=True)
    assert refused.count() == 2
    for event in AuditEvent.objects.all():
        assert "hunter2" not in str(event.detail)
    assert "hunter2" not in str(list(AuthFailureCount.objects.values()))


@override_settings(LOGIN_MAX_FAILURES_PER_ACCOUNT=2, LOGIN_LOCKOUT_PERIOD=120)
def test_the_limit_and_the_period_come_from_settings(sre: User) -> None:
    sign_in(SRE, WRONG)
    sign_in(SRE, WRONG)

    client = sign_in(SRE, PASSWORD)

    assert client.response.status_code == 429  # type: ignore[attr-defined]
    assert "try again in 2 minutes" in client.response.content.decode()  # type: ignore[attr-defined]


def test_forwarded_for_is_ignored_without_trusted_proxies(sre: User) -> None:
    for i in range(20):
        client = Client(REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
        client.post("/accounts/login/", {"username": f"x{i}", "password": WRONG})

    assert throttle.login_locked_until(SRE, "10.0.0.5", timezone.now()) is not None


@override_settings(TRUSTED_PROXY_HOPS=1)
def test_behind_a_trusted_proxy_the_address_it_saw_counts(sre: User) -> None:
    for i in range(20):
        # The client forged the first entry; the proxy appended the real address.
        client = Client(
            REMOTE_ADDR="10.0.0.254", HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, 203.0.113.9"
        )
        client.post("/accounts/login/", {"username": f"x{i}", "password": WRONG})

    now = timezone.now()
    assert throttle.login_locked_until("", "203.0.113.9", now) is not None
    assert throttle.login_locked_until("", "10.0.0.254", now) is None
