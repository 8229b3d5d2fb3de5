"""The JIRA change-ticket check at request time, against a fake JIRA server through
the real ``jira`` library: a ticket that exists in an allowed status lets a deploy
through; another status, a missing ticket or a malformed key is refused (400)
naming the ticket; JIRA down, failing, slow or refusing our credentials refuses the
request as unavailable (503), creating nothing. Without JIRA_URL only the pattern
applies, and no request leaves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from controlplane.models import AuditEvent
from deploys.models import DeployRun, Environment
from tests.conftest import ROOT, logged_in
from tests.factories import make_env, pool_runner
from tests.fakejira import TOKEN, FakeJira, connected

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("github")]

DEPLOYS = "/api/v1/deploys/"


@pytest.fixture
def jira(settings: Any) -> Iterator[FakeJira]:
    with connected(settings) as fake:
        yield fake


def production(**kw: Any) -> Environment:
    return make_env("production", pool_runner("prod-1"), **kw)


def post(client: Client, ticket: str, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    body = {"environment": "production", "ref": "main", "change_ticket": ticket}
    return client.post(DEPLOYS, body, content_type="application/json", headers=headers)


def test_a_ticket_in_an_allowed_status_lets_the_deploy_through(
    jira: FakeJira, sre: User
) -> None:
    production(change_ticket_pattern=r"INFRA-\d+")
    jira.add_issue("INFRA-473", "In Progress")

    response = post(logged_in(sre), "INFRA-473", key="k1")

    assert response.status_code == 202, response.content
    assert DeployRun.objects.get().change_ticket == "INFRA-473"
    # One look at the issue, with the control plane's credentials.
    assert [(s.method, s.path, s.authorized) for s in jira.seen] == [
        ("GET", "/rest/api/2/issue/INFRA-473", True)
    ]


def test_a_ticket_in_another_status_is_refused_naming_the_ticket_and_status(
    jira: FakeJira, sre: User
) -> None:
    production()
    jira.add_issue("INFRA-9", "Closed")

    response = post(logged_in(sre), "INFRA-9")

    assert response.status_code == 400
    [message] = response.json()["change_ticket"]
    assert message == (
        "change ticket INFRA-9 is Closed; a deploy to production needs it in "
        "Approved or In Progress"
    )
    assert not DeployRun.objects.exists()
    denied = AuditEvent.objects.get(action="deploy.request")
    assert denied.outcome == AuditEvent.Outcome.DENIED


def test_the_environment_lists_its_own_allowed_statuses(
    jira: FakeJira, sre: User
) -> None:
    production(jira_allowed_statuses="Scheduled, approved for prod")
    jira.add_issue("CHG-1", "Approved")
    jira.add_issue("CHG-2", "APPROVED FOR PROD")

    refused = post(logged_in(sre), "CHG-1")
    accepted = post(logged_in(sre), "CHG-2")

    assert refused.status_code == 400
    assert (
        "needs it in Scheduled or approved for prod"
        in (refused.json()["change_ticket"][0])
    )
    # Statuses compare without regard to case.
    assert accepted.status_code == 202


def test_a_ticket_jira_does_not_have_is_refused(jira: FakeJira, sre: User) -> None:
    production()

    response = post(logged_in(sre), "INFRA-404")

    assert response.status_code == 400
    assert response.json()["change_ticket"] == [
        "INFRA-404 does not exist in JIRA (or the control plane's JIRA account "
        "cannot see it)"
    ]
    assert not DeployRun.objects.exists()


@pytest.mark.parametrize("ticket", ["infra-473", "INFRA473", "CHG0012345"])
def test_a_ticket_that_is_not_an_issue_key_is_refused_without_asking_jira(
    jira: FakeJira, sre: User, ticket: str
) -> None:
    production()

    response = post(logged_in(sre), ticket)

    assert response.status_code == 400
    assert "is not a JIRA issue key" in response.json()["change_ticket"][0]
    assert jira.seen == []


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("500", "JIRA answered HTTP 500 about INFRA-1"),
        ("503", "JIRA answered HTTP 503 about INFRA-1"),
        ("slow", "JIRA did not answer within 0.5 s"),
        ("down", "cannot reach JIRA (ConnectionError)"),
        (
            "401",
            "JIRA rejected the control plane's credentials (HTTP 401): an admin "
            "must check JIRA_USER and JIRA_TOKEN",
        ),
        (
            "403",
            "JIRA refused access (HTTP 403): an admin must check JIRA_USER and "
            "JIRA_TOKEN",
        ),
    ],
)
def test_jira_unavailable_refuses_the_request_with_a_clear_503(
    jira: FakeJira, sre: User, settings: Any, fault: str, reason: str
) -> None:
    production()
    jira.add_issue("INFRA-1", "Approved")
    if fault == "slow":
        jira.delay = 5.0
    elif fault == "down":
        jira.stop()
    elif fault == "401":
        settings.JIRA_TOKEN = "a-revoked-token"  # noqa: S105
    elif fault == "403":
        jira.forbidden = True
    else:
        jira.fail_next(1, int(fault))

    response = post(logged_in(sre), "INFRA-1", key="k-503")

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json() == {
        "detail": f"cannot check change ticket INFRA-1: {reason}; nothing was "
        "created, retry when JIRA answers, or an admin may break glass with a "
        "reason to deploy without the check",
        "code": "jira_unavailable",
        "field": "change_ticket",
    }
    assert not DeployRun.objects.exists()
    # The key was released: the same request is judged afresh once JIRA answers.
    jira.delay = 0.0
    jira.forbidden = False
    if fault not in ("down", "401"):
        assert post(logged_in(sre), "INFRA-1", key="k-503").status_code == 202


def test_a_bearer_token_alone_is_sent_as_a_personal_access_token(
    settings: Any, sre: User
) -> None:
    production()
    with FakeJira(token=TOKEN) as fake:
        fake.add_issue("INFRA-2", "Approved")
        settings.JIRA_URL = fake.url + "/"
        settings.JIRA_USER = ""
        settings.JIRA_TOKEN = TOKEN

        response = post(logged_in(sre), "INFRA-2")

    assert response.status_code == 202
    assert [s.authorized for s in fake.seen] == [True]


def test_a_deploy_without_a_ticket_where_none_is_required_asks_nothing(
    jira: FakeJira, sre: User
) -> None:
    production()

    response = post(logged_in(sre), "")

    assert response.status_code == 202
    assert jira.seen == []


def test_without_jira_url_only_the_pattern_applies(settings: Any, sre: User) -> None:
    production(change_ticket_pattern=r"[A-Z]+-\d+")
    with FakeJira() as fake:
        settings.JIRA_URL = ""
        fake.add_issue("INFRA-5", "Closed")

        missing = post(logged_in(sre), "INFRA-404")
        closed = post(logged_in(sre), "INFRA-5")
        unmatched = post(logged_in(sre), "nope")

    assert (missing.status_code, closed.status_code) == (202, 202)
    assert unmatched.status_code == 400
    assert fake.seen == []


@pytest.mark.parametrize(
    "ticket", ["INFRA 473", "INFRA-1;rm", "${{ github.token }}", "-INFRA-1", "ü-1"]
)
def test_characters_github_must_not_see_are_refused(sre: User, ticket: str) -> None:
    production()

    response = post(logged_in(sre), ticket)

    assert response.status_code == 400
    assert response.json()["change_ticket"] == [
        "letters, digits and . _ : # / - only, starting with a letter or digit "
        "(the ticket is shown in the GitHub run's name)"
    ]


def test_the_environment_shows_and_takes_its_allowed_statuses(
    jira: FakeJira, admin_user: User, sre: User
) -> None:
    production(jira_allowed_statuses="Scheduled")
    admin = logged_in(admin_user)

    page = logged_in(sre).get("/deploys/environments/production/").content.decode()
    changed = admin.patch(
        "/api/v1/environments/production/",
        {"jira_allowed_statuses": "Approved, Scheduled"},
        content_type="application/json",
    )
    refused = admin.patch(
        "/api/v1/environments/production/",
        {"jira_allowed_statuses": " , "},
        content_type="application/json",
    )

    assert "checked in JIRA: it must exist and be Scheduled" in page
    assert changed.status_code == 200
    assert changed.json()["jira_allowed_statuses"] == "Approved, Scheduled"
    assert refused.status_code == 400
    assert refused.json() == {
        "jira_allowed_statuses": ["status names separated by commas"]
    }


def test_only_the_gateway_imports_the_jira_library() -> None:
    importing = sorted(
        str(path.relative_to(ROOT))
        for folder in ("controlplane", "deploys", "runners", "rotations", "diagnostics")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"^\s*(from jira\b|import jira\b)", path.read_text(), re.M)
    )

    assert importing == ["deploys/jira_gateway.py"]
