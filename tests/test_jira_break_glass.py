"""Break glass past a JIRA that cannot answer, against the fake JIRA server: an
admin's deploy with a reason goes on with its change ticket unchecked, flagged on
the timeline, the deploy page and in the audit log, and its outcome still reaches
the ticket through the outbox once JIRA is back; anyone else gets the 503, told an
admin may break glass; a ticket JIRA refuses stays refused, break glass or not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from controlplane import notifications
from controlplane.models import AuditEvent, Notification
from deploys import ticket_outbox
from deploys.models import DeployEvent, DeployRun, Environment, TicketUpdate
from deploys.triggers import request_deploy
from githubsim import Simulator
from tests.conftest import logged_in
from tests.deploying import Clock, drive, final, simulated_env
from tests.factories import make_env, pool_runner
from tests.fakejira import FakeJira, connected

pytestmark = pytest.mark.django_db

DEPLOYS = "/api/v1/deploys/"
CAUSE = "JIRA answered HTTP 503 about INFRA-1"
UNCHECKED = f"change ticket INFRA-1 not checked: JIRA unavailable ({CAUSE})"
HINT = ", or an admin may break glass with a reason to deploy without the check"


@pytest.fixture
def jira(settings: Any) -> Iterator[FakeJira]:
    with connected(settings) as fake:
        settings.NOTIFY_SCAN_GRACE = 0
        settings.JIRA_RETRY_BASE = 30
        yield fake


def staging(**kw: Any) -> Environment:
    """Not production, so the form asks no confirmation."""
    return make_env("staging", pool_runner("stage-1"), **kw)


def post(client: Client, ticket: str = "INFRA-1", reason: str = "") -> Any:
    body = {
        "environment": "staging",
        "ref": "main",
        "change_ticket": ticket,
        "break_glass_reason": reason,
    }
    return client.post(DEPLOYS, body, content_type="application/json")


@pytest.mark.usefixtures("github")
def test_an_admin_breaks_glass_past_a_jira_that_cannot_answer(
    jira: FakeJira, admin_user: User
) -> None:
    staging(change_ticket_pattern=r"INFRA-\d+")
    jira.add_issue("INFRA-1", "Approved")
    jira.fail_next(1, 503)
    admin = logged_in(admin_user)

    response = post(admin, reason="JIRA is down, hotfix for the outage")

    assert response.status_code == 202, response.content
    run = DeployRun.objects.get()
    assert (run.change_ticket, run.state) == ("INFRA-1", DeployRun.State.QUEUED)
    events = response.json()["events"]
    assert [e["kind"] for e in events] == ["requested", "break_glass"]
    assert events[1]["message"] == (
        f"{UNCHECKED} by ada-admin: JIRA is down, hotfix for the outage"
    )
    assert events[1]["detail"] == {"jira_unverified": CAUSE, "change_ticket": "INFRA-1"}
    audited = AuditEvent.objects.get(action="deploy.break_glass")
    assert audited.detail == {
        "jira_unverified": CAUSE,
        "change_ticket": "INFRA-1",
        "reason": "JIRA is down, hotfix for the outage",
    }
    assert AuditEvent.objects.filter(action="deploy.request").get().outcome == (
        AuditEvent.Outcome.SUCCESS
    )
    listed = admin.get(DEPLOYS).json()["results"]
    assert [(d["id"], d["break_glass"]) for d in listed] == [(run.pk, True)]
    page = admin.get(f"/deploys/{run.pk}/").content.decode()
    assert 'id="change-ticket-unverified"' in page
    assert f"JIRA could not answer when it was requested ({CAUSE})" in page
    assert UNCHECKED in page


@pytest.mark.usefixtures("github")
@pytest.mark.parametrize("fault", ["down", "401"])
def test_break_glass_passes_jira_down_or_refusing_our_credentials(
    jira: FakeJira, admin_user: User, settings: Any, fault: str
) -> None:
    staging()
    if fault == "down":
        jira.stop()
    else:
        settings.JIRA_TOKEN = "a-revoked-token"  # noqa: S105

    response = post(logged_in(admin_user), reason="incident INC-7")

    assert response.status_code == 202, response.content
    detail = DeployEvent.objects.get(kind=DeployEvent.Kind.BREAK_GLASS).detail
    assert detail["jira_unverified"].startswith(
        "cannot reach JIRA" if fault == "down" else "JIRA rejected the control plane's"
    )


@pytest.mark.usefixtures("github")
@pytest.mark.parametrize("who", ["sre", "sre with a reason", "admin without a reason"])
def test_without_an_admins_break_glass_jira_down_is_a_503_naming_it(
    jira: FakeJira, admin_user: User, sre: User, who: str
) -> None:
    staging()
    jira.fail_next(1, 503)
    user = admin_user if who.startswith("admin") else sre
    reason = "urgent" if who == "sre with a reason" else ""

    response = post(logged_in(user), reason=reason)

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json() == {
        "detail": f"cannot check change ticket INFRA-1: {CAUSE}; nothing was "
        f"created, retry when JIRA answers{HINT}",
        "code": "jira_unavailable",
        "field": "change_ticket",
    }
    assert not DeployRun.objects.exists()
    assert not AuditEvent.objects.filter(action="deploy.break_glass").exists()


@pytest.mark.usefixtures("github")
@pytest.mark.parametrize(
    ("ticket", "refusal"),
    [
        (
            "INFRA-9",
            "change ticket INFRA-9 is Closed; a deploy to staging needs it in "
            "Approved or In Progress",
        ),
        (
            "INFRA-404",
            "INFRA-404 does not exist in JIRA (or the control plane's JIRA account "
            "cannot see it)",
        ),
    ],
)
def test_a_ticket_jira_refuses_stays_refused_with_break_glass(
    jira: FakeJira, admin_user: User, ticket: str, refusal: str
) -> None:
    staging()
    jira.add_issue("INFRA-9", "Closed")

    response = post(logged_in(admin_user), ticket, reason="hotfix")

    assert response.status_code == 400
    assert response.json() == {
        "change_ticket": [
            f"{refusal}; break glass goes past JIRA only when JIRA cannot answer, "
            "never past a ticket JIRA refuses"
        ]
    }
    assert not DeployRun.objects.exists()


@pytest.mark.usefixtures("github")
@pytest.mark.parametrize(
    ("ticket", "refusal"),
    [
        ("CHG-1", r"staging needs a change ticket matching INFRA-\d+"),
        ("INFRA-1;rm", "letters, digits and . _ : # / - only"),
    ],
)
def test_break_glass_past_jira_still_checks_the_pattern_and_characters(
    jira: FakeJira, admin_user: User, ticket: str, refusal: str
) -> None:
    staging(change_ticket_pattern=r"INFRA-\d+")
    jira.stop()

    response = post(logged_in(admin_user), ticket, reason="hotfix")

    assert response.status_code == 400
    assert response.json()["change_ticket"][0].startswith(refusal)
    assert not DeployRun.objects.exists()


@pytest.mark.usefixtures("github")
def test_the_form_lets_an_admin_break_glass_and_tells_an_sre_how(
    jira: FakeJira, admin_user: User, sre: User
) -> None:
    env = staging()
    form = {
        "environment": env.name,
        "ref": "main",
        "change_ticket": "INFRA-1",
        "idempotency_key": "form-1",
    }
    jira.fail_next(2, 503)

    refused = logged_in(sre).post("/deploys/new/", form)
    admin = logged_in(admin_user)
    broke = admin.post(
        "/deploys/new/",
        {**form, "idempotency_key": "form-2", "break_glass_reason": "P1"},
    )

    assert refused.status_code == 503
    assert f"retry when JIRA answers{HINT}" in refused.content.decode(), (
        refused.content.decode()
    )
    run = DeployRun.objects.get()
    assert broke.status_code == 302
    assert broke["Location"] == f"/deploys/{run.pk}/"
    page = admin.get(broke["Location"]).content.decode()
    assert "not checked in JIRA" in page
    assert f"{UNCHECKED} by ada-admin: P1" in page


@pytest.mark.sim(time_scale=600, pickup_delay=5, job_duration=20, connect=True)
def test_the_outcome_reaches_the_unchecked_ticket_once_jira_is_back(
    jira: FakeJira, sim: Simulator, admin_user: User, settings: Any
) -> None:
    settings.NOTIFY_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
    settings.NOTIFY_SLACK_WEBHOOK_URLS = []
    jira.add_issue("INFRA-1", "Approved")
    env = simulated_env(sim)
    # JIRA fails the request's check and the outbox's first two attempts.
    jira.fail_next(3, 503)
    clock = Clock()

    run = request_deploy(admin_user, env, "main", "INFRA-1", break_glass_reason="P1")
    done = drive(run.run, final, clock)
    first = clock() + timedelta(seconds=1)
    ticket_outbox.process(first)
    ticket_outbox.send_due(first + timedelta(seconds=31))
    update = TicketUpdate.objects.get(run=done)
    pending = (update.state, update.attempts, update.last_error)
    ticket_outbox.send_due(first + timedelta(seconds=31 + 61))

    assert done.state == DeployRun.State.SUCCEEDED
    assert pending == ("pending", 2, "JIRA answered HTTP 503 about INFRA-1")
    update.refresh_from_db()
    assert (update.state, update.attempts) == ("sent", 3)
    [comment] = jira.comments("INFRA-1")
    assert f"Deploy #{done.pk} of main" in comment
    notifications.scan_events(clock() + timedelta(seconds=1))
    sent = Notification.objects.get(kind=notifications.Kind.DEPLOY_BREAK_GLASS)
    assert UNCHECKED in sent.message
    assert sent.runbook.endswith("/runbooks/change-ticket-updates/")
