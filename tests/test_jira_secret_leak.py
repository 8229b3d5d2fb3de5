"""The JIRA token leak test, in the style of ``test_secret_leak``: a canary token
used for basic auth and then as a bearer token, with every logger at DEBUG,
through deploy requests JIRA accepts, refuses (401, 403, 404, wrong status), fails
(5xx), answers too slowly or not at all, a crash inside the JIRA call rendered as
the app's 500 page and Django's technical one, and outcome comments failing and
succeeding; then the canary and its encodings are searched for in every database
row, log record, stdout/stderr, Redis, every response, /metrics and the audit rows.
"""

from __future__ import annotations

import json
import logging
import secrets as random
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone
from requests.adapters import HTTPAdapter

from controlplane.models import AuditEvent
from deploys import ticket_outbox
from deploys.models import DeployRun, TicketUpdate
from tests.factories import make_env, pool_runner
from tests.fakejira import USER, FakeJira
from tests.test_secret_leak import (
    dump_database,
    dump_redis,
    every_logger_at_debug,
    hits,
    response_text,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("github")]

DEPLOYS = "/api/v1/deploys/"


def test_the_jira_token_appears_nowhere(
    admin_user: User,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    canary = "CANARY-" + random.token_hex(16)
    make_env("production", pool_runner("prod-1"))
    admin = Client(raise_request_exception=False)
    admin.force_login(admin_user)
    responses: list[Any] = []

    def request(ticket: str) -> Any:
        body = {"environment": "production", "ref": "main", "change_ticket": ticket}
        response = admin.post(DEPLOYS, body, content_type="application/json")
        responses.append(response)
        return response.status_code

    caplog.set_level(logging.DEBUG)
    with every_logger_at_debug(), FakeJira(user=USER, token=canary) as jira:
        settings.JIRA_URL = jira.url
        settings.JIRA_USER = USER
        settings.JIRA_TOKEN = canary
        settings.JIRA_TIMEOUT = 0.3
        settings.NOTIFY_SCAN_GRACE = 0
        settings.NOTIFY_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
        for key in ("INFRA-1", "INFRA-2", "INFRA-3"):
            jira.add_issue(key, "Approved")
        jira.add_issue("INFRA-4", "Closed")
        statuses = [request("INFRA-1"), request("INFRA-4"), request("INFRA-404")]
        jira.fail_next(1, 500)
        statuses.append(request("INFRA-2"))
        jira.forbidden = True
        statuses.append(request("INFRA-2"))
        jira.forbidden = False
        jira.delay = 2.0
        statuses.append(request("INFRA-2"))
        jira.delay = 0.0
        # Credentials JIRA refuses: a wrong token that still carries the canary.
        settings.JIRA_TOKEN = canary + "-old"
        statuses.append(request("INFRA-2"))
        # A bearer token (Data Center), accepted.
        jira.user = ""
        settings.JIRA_USER = ""
        settings.JIRA_TOKEN = canary
        statuses.append(request("INFRA-3"))
        assert statuses == [202, 400, 400, 503, 503, 503, 503, 202]
        # A crash as the request leaves, under the jira library's and requests'
        # frames: the app's 500 page, then Django's technical one with every
        # frame's variables.
        with monkeypatch.context() as patch:

            def crash(self: HTTPAdapter, *args: Any, **kwargs: Any) -> None:
                raise RuntimeError("the JIRA client broke")

            patch.setattr(HTTPAdapter, "send", crash)
            for debug in (False, True):
                settings.DEBUG = debug
                statuses.append(request("INFRA-3"))
            settings.DEBUG = False
        assert statuses[-2:] == [500, 500]
        # Outcome comments: the first fails (401), the retry goes through.
        for run in DeployRun.objects.all():
            run.finish(DeployRun.State.SUCCEEDED, "", "", timezone.now())
        settings.JIRA_TOKEN = canary + "-old"
        start = timezone.now() + timedelta(seconds=1)
        ticket_outbox.process(start)
        settings.JIRA_TOKEN = canary
        ticket_outbox.send_due(start + timedelta(hours=2))
        for run in DeployRun.objects.all():
            responses.append(admin.get(f"/deploys/{run.pk}/"))
            responses.append(admin.get(f"/api/v1/deploys/{run.pk}/"))
        metrics_text = admin.get("/metrics").content.decode()

    # Sanity: the searches saw real material.
    technical = responses[9].content
    assert b"Traceback" in technical and b"the JIRA client broke" in technical
    assert set(TicketUpdate.objects.values_list("state", flat=True)) == {"sent"}
    assert len(jira.comments("INFRA-1")) == 1
    assert any(not seen.authorized for seen in jira.seen)

    database, rows = dump_database()
    logs = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.exc_text or ''} "
        f"{logging.Formatter().formatException(r.exc_info) if r.exc_info else ''}"
        for r in caplog.records
    )
    out, err = capfd.readouterr()
    redis_dump = dump_redis()
    audit_rows = "\n".join(
        json.dumps(row, default=str) for row in AuditEvent.objects.values()
    )
    http = "\n".join(response_text(r) for r in responses)
    found = {
        "database": hits(database, canary),
        "logs": hits(logs, canary),
        "stdout_stderr": hits(out + err, canary),
        "redis": hits(redis_dump[0], canary) if redis_dump else 0,
        "http_responses": hits(http, canary),
        "metrics": hits(metrics_text, canary),
        "audit_rows": hits(audit_rows, canary),
    }
    print(f"\nJIRA token leak test ({connection.vendor}): {found}")
    assert not any(found.values()), f"the JIRA token leaked: {found}"
    assert rows > 0
    assert len(caplog.records) > 0
