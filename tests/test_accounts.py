"""Accounts: createuser/issuetoken commands, audited login/logout, session limits,
the navigation and the error pages."""

from __future__ import annotations

import io
import sys
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.models import AuthToken

from controlplane import context_processors
from controlplane.context_processors import navigation_entries
from controlplane.models import AuditEvent
from controlplane.roles import Role, role_of
from controlplane.views import server_error
from tests.conftest import PASSWORD, logged_in

pytestmark = pytest.mark.django_db


def run(command: str, *args: str, stdin: str = "") -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command(command, *args, stdout=out, stderr=err)
    finally:
        sys.stdin = old_stdin
    return out.getvalue(), err.getvalue()


# createuser -----------------------------------------------------------------------


def test_createuser_generates_a_password_shown_once_and_sets_the_role() -> None:
    out, _ = run("createuser", "rita", "--role", "sre", "--email", "rita@example.com")

    password = out.split("Password: ")[1].strip()
    user = authenticate(username="rita", password=password)
    assert isinstance(user, User)
    assert user.email == "rita@example.com"
    assert role_of(user) == Role.SRE
    assert password not in user.password  # only the hash is stored
    event = AuditEvent.objects.get(action="user.create")
    assert event.target_id == str(user.pk)
    assert password not in str(event.detail)


def test_createuser_reads_the_password_from_stdin_and_prints_none() -> None:
    out, _ = run(
        "createuser", "vic", "--role", "viewer", "--password-stdin", stdin=PASSWORD
    )

    assert "Password" not in out and PASSWORD not in out
    user = authenticate(username="vic", password=PASSWORD)
    assert isinstance(user, User)
    assert role_of(user) == Role.VIEWER


def test_createuser_rejects_a_weak_password() -> None:
    with pytest.raises(CommandError, match="Password rejected"):
        run("createuser", "weak", "--role", "admin", "--password-stdin", stdin="1234")
    assert not User.objects.filter(username="weak").exists()


def test_createuser_refuses_an_existing_username(viewer: User) -> None:
    with pytest.raises(CommandError, match="already exists"):
        run("createuser", viewer.username, "--role", "admin")
    assert role_of(User.objects.get(pk=viewer.pk)) == Role.VIEWER


# issuetoken -----------------------------------------------------------------------


def test_issuetoken_prints_a_working_token_and_stores_only_its_digest(
    sre: User,
) -> None:
    out, err = run("issuetoken", sre.username, "--ttl-days", "7")
    token = out.strip()

    stored = AuthToken.objects.get(user=sre)
    assert token not in stored.digest
    assert stored.expiry is not None
    assert (
        timedelta(days=6, hours=23)
        < stored.expiry - timezone.now()
        <= timedelta(days=7)
    )
    assert "shown only this once" in err
    response = Client().get(
        "/api/v1/auth/whoami", headers={"Authorization": f"Token {token}"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == sre.username
    assert body["role"] == "sre"
    assert body["auth"] == "token"
    assert body["token_expiry"] is not None
    event = AuditEvent.objects.get(action="api_token.issue")
    assert token not in str(event.detail)


def test_issuetoken_refuses_unknown_users_and_bad_ttl(viewer: User) -> None:
    with pytest.raises(CommandError, match="No active user"):
        run("issuetoken", "nobody")
    with pytest.raises(CommandError, match="--ttl-days"):
        run("issuetoken", viewer.username, "--ttl-days", "0")
    assert not AuthToken.objects.exists()


def test_expired_token_is_refused_with_401(viewer: User) -> None:
    out, _ = run("issuetoken", viewer.username, "--ttl-days", "1")

    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        response = Client().get(
            "/api/v1/auth/whoami", headers={"Authorization": f"Token {out.strip()}"}
        )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


# login / logout -----------------------------------------------------------------------


def test_login_is_audited_and_lands_on_home(viewer: User) -> None:
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": viewer.username, "password": PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == "/"
    event = AuditEvent.objects.get(action="session.login")
    assert event.actor == viewer
    assert event.outcome == AuditEvent.Outcome.SUCCESS
    assert client.get("/").status_code == 200


def test_failed_login_is_audited_with_the_username_but_never_the_password(
    viewer: User,
) -> None:
    wrong = "not-the-password-xyz"
    response = Client().post(
        "/accounts/login/", {"username": viewer.username, "password": wrong}
    )

    assert response.status_code == 200
    assert b"did not match" in response.content
    event = AuditEvent.objects.get(action="session.login")
    assert event.outcome == AuditEvent.Outcome.FAILURE
    assert event.actor is None
    assert event.detail["username"] == viewer.username
    assert event.detail["remote_addr"] == "127.0.0.1"
    assert wrong not in str(event.detail)
    assert wrong not in str(event)


def test_logout_is_a_post_that_is_audited_and_ends_the_session(viewer: User) -> None:
    client = logged_in(viewer)
    assert client.get("/accounts/logout/").status_code == 405

    response = client.post("/accounts/logout/", follow=True)

    assert response.redirect_chain[0] == ("/accounts/login/", 302)
    assert b"You have been logged out." in response.content
    assert AuditEvent.objects.get(action="session.logout").actor == viewer
    assert client.get("/")["Location"].startswith("/accounts/login/")


def test_password_change_is_audited_without_the_passwords(viewer: User) -> None:
    new_password = "a-brand-new-passphrase-42"  # noqa: S105
    response = logged_in(viewer).post(
        "/accounts/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": new_password,
            "new_password2": new_password,
        },
    )

    assert response.status_code == 302
    assert authenticate(username=viewer.username, password=new_password) == viewer
    event = AuditEvent.objects.get(action="user.password_change")
    assert event.actor == viewer
    assert new_password not in str(event.detail) and PASSWORD not in str(event.detail)


def test_login_starts_the_12_hour_clock_afresh(viewer: User) -> None:
    with time_machine.travel(timezone.now(), tick=False) as clock:
        client = logged_in(viewer)
        assert client.get("/").status_code == 200
        clock.shift(timedelta(hours=11, minutes=50))
        client.post(
            "/accounts/login/", {"username": viewer.username, "password": PASSWORD}
        )
        clock.shift(timedelta(minutes=20))
        response = client.get("/")

    assert response.status_code == 200


def test_anonymous_pages_redirect_to_login_with_next() -> None:
    response = Client().get("/audit/?action=login")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/audit/%3Faction%3Dlogin"


# Session limits ------------------------------------------------------------------


def test_session_ends_after_30_idle_minutes(viewer: User) -> None:
    with time_machine.travel(timezone.now(), tick=False) as clock:
        client = logged_in(viewer)
        assert client.get("/").status_code == 200
        clock.shift(timedelta(minutes=29))
        assert client.get("/").status_code == 200  # activity resets the idle clock
        clock.shift(timedelta(minutes=29))
        assert client.get("/").status_code == 200
        clock.shift(timedelta(minutes=31))
        response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    event = AuditEvent.objects.get(action="session.expire")
    assert event.actor == viewer
    assert event.detail == {"limit": "idle"}


def test_session_ends_12_hours_after_login_however_active(viewer: User) -> None:
    with time_machine.travel(timezone.now(), tick=False) as clock:
        client = logged_in(viewer)
        for _ in range(12 * 3):  # a request every 20 minutes for 12 hours
            assert client.get("/").status_code == 200
            clock.shift(timedelta(minutes=20))
        clock.shift(timedelta(minutes=1))
        response = client.get("/")

    assert response.status_code == 302
    assert AuditEvent.objects.get(action="session.expire").detail == {
        "limit": "absolute"
    }


# Navigation and pages -----------------------------------------------------------


def test_navigation_shows_existing_sections_and_marks_the_current_one(
    viewer: User,
) -> None:
    response = logged_in(viewer).get("/audit/")

    html = response.content.decode()
    assert '<a href="/audit/" aria-current="page">Audit</a>' in html
    assert "val-viewer" in html
    assert '<span class="role" title="Your role">viewer</span>' in html
    # The logout control is a form (POST), not a link.
    assert '<form method="post" action="/accounts/logout/">' in html


def test_navigation_skips_sections_that_do_not_exist_yet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        context_processors,
        "NAVIGATION",
        [("Nowhere", "nowhere:index"), ("Home", "home"), ("Audit", "audit-list")],
    )

    entries = navigation_entries("/audit/")

    assert [(e.label, e.url, e.current) for e in entries] == [
        ("Home", "/", False),
        ("Audit", "/audit/", True),
    ]


def test_home_shows_budget_and_task_status(viewer: User) -> None:
    from controlplane.models import GitHubUsage, TaskStatus

    GitHubUsage.objects.record(
        counter="requests_total",
        headers={"x-ratelimit-remaining": "4321", "x-ratelimit-limit": "5000"},
    )
    TaskStatus.objects.record("runners.sync", ok=False, duration=1.0, error="boom")

    html = logged_in(viewer).get("/").content.decode()

    assert "4321 of 5000" in html
    assert "runners.sync" in html
    assert 'title="boom"' in html


def test_outsider_gets_the_403_page_naming_the_role(outsider: User) -> None:
    response = logged_in(outsider).get("/audit/")

    assert response.status_code == 403
    assert b"This page needs the viewer role." in response.content
    assert b"oscar-outsider" in response.content


def test_unknown_page_gets_the_404_page(viewer: User) -> None:
    response = logged_in(viewer).get("/no/such/page")

    assert response.status_code == 404
    assert b"Nothing here" in response.content


def test_500_page_renders_without_request_context_or_database() -> None:
    request = RequestFactory().get("/")
    with CaptureQueriesContext(connection) as queries:
        response = server_error(request)

    assert response.status_code == 500
    assert b"Something went wrong" in response.content
    assert len(queries) == 0
