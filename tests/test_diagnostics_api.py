"""The diagnostics endpoints: the host's POST /diagnostics (validation, 4xx that say
what to fix, server-side redaction), the SRE actions (API and page: audited, one in
flight per runner, refused for an offline runner), the GitHub budget guard, and the
query count of a runner's diagnostics."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from controlplane.github import RateBudget, gateway_for
from controlplane.models import AuditEvent
from diagnostics import conf, domain
from diagnostics.models import HostRun
from runners.models import Runner
from tests.factories import runner_with_token
from tests.hostroot import CANARY

pytestmark = pytest.mark.django_db

NAME = "prod-primary-1"


def report(**extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "host": {"hostname": "prod-primary-1", "load1": 0.5, "uptime_seconds": 10},
        "disk": {"path": "/", "total_bytes": 100, "free_bytes": 40},
        "runner": {
            "version": "2.330.0",
            "service": "active",
            "diag": [{"file": "Runner_1.log", "lines": ["ok"]}],
        },
        "network": [{"name": "prometheus", "url": "http://p:9090", "reachable": False}],
        **extra,
    }


def in_flight(runner: Runner, kind: str = HostRun.Kind.DIAGNOSTICS) -> HostRun:
    return HostRun.objects.create(
        runner=runner,
        kind=kind,
        state=HostRun.State.RUNNING,
        requested_by="sam-sre",
        deadline=timezone.now() + timedelta(minutes=10),
    )


def post(body: Any, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return Client().post(
        "/diagnostics", data=data, content_type="application/json", headers=headers
    )


def test_report_is_recorded_redacted_again_and_ends_the_run() -> None:
    runner, token = runner_with_token(NAME)
    run = in_flight(runner)
    leaky = report()
    # An old or altered script that did not redact: the control plane does.
    leaky["runner"]["diag"][0]["lines"] = [f"Authorization: Bearer {CANARY}"]

    answer = post({"token": run.token, "report": leaky}, token)

    assert answer.status_code == 201, answer.content
    run.refresh_from_db()
    assert run.state == HostRun.State.SUCCEEDED
    assert isinstance(run.report, dict)
    assert CANARY not in json.dumps(run.report)
    assert run.report["runner"]["diag"][0]["lines"] == ["Authorization: [REDACTED]"]
    assert run.facts == {
        "disk free %": 40,
        "load1": 0.5,
        "runner version": "2.330.0",
        "runner service": "active",
        "prometheus": "unreachable",
    }
    assert AuditEvent.objects.filter(action="runner.diagnostics_reported").count() == 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("{nope", 400, "body is not valid JSON"),
        ([1], 400, 'body must be {"token"'),
        (
            {"token": "x", "report": report(), "extra": 1},
            400,
            "unknown field(s): extra",
        ),
        ({"report": report()}, 400, "token must be"),
        ({"token": "x", "report": "text"}, 400, "report must be a JSON object"),
        (
            {"token": "x", "report": report(shell="rm")},
            400,
            "unknown section(s): shell",
        ),
        ({"token": "x", "report": {"version": 1}}, 400, "lacks section(s): disk"),
        ({"token": "x", "report": report(version=2)}, 400, "report.version must be 1"),
        (
            {"token": "x", "report": report(memory={"x": "y" * 1001})},
            400,
            "report.memory.x is longer than 1000",
        ),
        (
            {"token": "x", "report": report(network=[{"url": "u"}])},
            400,
            "report.network must be a list of objects with a name",
        ),
        ({"token": "diag-unknown", "report": report()}, 404, "no diagnostics run"),
    ],
)
def test_bad_reports_answer_4xx_saying_what_to_fix(
    body: Any, status: int, message: str
) -> None:
    runner, token = runner_with_token(NAME)
    in_flight(runner)
    answer = post(body, token)
    assert answer.status_code == status, answer.content
    assert message in answer.json()["error"]
    assert HostRun.objects.get().report is None


def test_reports_need_the_runners_own_token_and_a_run_in_flight() -> None:
    runner, token = runner_with_token(NAME)
    _, other_token = runner_with_token("prod-secondary-1")
    run = in_flight(runner)
    body = {"token": run.token, "report": report()}

    assert post(body, None).status_code == 401
    assert post(body, "rhb_wrong").status_code == 401
    # Another runner's token does not make this runner's report.
    assert post(body, other_token).status_code == 404
    assert Client().get("/diagnostics").status_code == 405
    too_big = post("x" * (64 * 1024 + 1), token)
    assert too_big.status_code == 413

    HostRun.objects.filter(pk=run.pk).update(
        state=HostRun.State.TIMED_OUT, finished_at=timezone.now()
    )
    late = post(body, token)
    assert late.status_code == 409
    assert "already ended (timed_out)" in late.json()["error"]


def test_sre_runs_diagnostics_once_at_a_time_and_it_is_audited(
    sre_client: Client, viewer_client: Client
) -> None:
    runner_with_token(NAME, github_status="online")
    url = f"/api/v1/runner-diagnostics/{NAME}/run/"

    assert viewer_client.post(url).status_code == 403
    first = sre_client.post(url)
    assert first.status_code == 202, first.content
    assert first.json()["kind"] == "diagnostics"
    assert first.json()["state"] == "dispatching"
    second = sre_client.post(f"/api/v1/runner-diagnostics/{NAME}/install-agent/")
    assert second.status_code == 409
    run = HostRun.objects.get()
    # Who asked and when, and how long it may take: another SRE's run is not
    # cancelled the way a canary is.
    assert second.json()["detail"] == (
        f"diagnostics requested by sam-sre at {run.requested_at:%Y-%m-%d %H:%M} UTC "
        f"is in flight on prod-primary-1: wait for it to end (by "
        f"{run.deadline:%H:%M} UTC at the latest) before asking for agent install"
    )
    assert HostRun.objects.count() == 1
    event = AuditEvent.objects.get(action="runner.diagnostics_requested")
    assert event.actor_name == "sam-sre"
    assert event.detail == {"token": first.json()["token"]}
    assert sre_client.post("/api/v1/runner-diagnostics/nope/run/").status_code == 404
    with_body = sre_client.post(url, {"runner": "x"}, content_type="application/json")
    assert with_body.status_code == 400


def test_an_offline_runner_is_refused_with_the_reason(sre_client: Client) -> None:
    runner_with_token(NAME, github_status="offline")
    answer = sre_client.post(f"/api/v1/runner-diagnostics/{NAME}/install-agent/")
    assert answer.status_code == 409
    assert "GitHub reports prod-primary-1 offline" in answer.json()["detail"]
    assert not HostRun.objects.exists()


def test_the_page_offers_the_agent_when_heartbeats_are_missing(
    sre_client: Client,
) -> None:
    runner_with_token(NAME, github_status="online")
    page = sre_client.get(f"/fleet/{NAME}/").content.decode()
    assert 'id="run-diagnostics"' in page
    assert 'id="install-agent"' in page
    assert "/runbooks/runner-no-ssh/" in page

    answer = sre_client.post(f"/fleet/{NAME}/diagnostics/install-agent/", follow=True)

    assert answer.redirect_chain[-1][0] == f"/fleet/{NAME}/"
    page = answer.content.decode()
    assert "agent install dispatched on prod-primary-1" in page
    assert 'id="diagnostics-in-flight"' in page
    assert 'id="install-agent"' not in page
    assert HostRun.objects.get().kind == HostRun.Kind.AGENT_INSTALL


def test_the_page_links_the_firewall_runbook_when_the_exporter_is_unreachable(
    viewer_client: Client,
) -> None:
    runner, _ = runner_with_token(NAME, github_status="online")
    page = viewer_client.get(f"/fleet/{NAME}/").content.decode()
    assert 'id="exporter-unreachable-hint"' not in page
    assert 'id="run-diagnostics"' not in page  # viewers read, SREs run

    Runner.objects.filter(pk=runner.pk).update(
        exporter_url="http://prod-primary-1:9100/metrics",
        exporter_checked_at=timezone.now(),
        exporter_ok=False,
    )
    page = viewer_client.get(f"/fleet/{NAME}/").content.decode()
    hint = page[page.index('id="exporter-unreachable-hint"') :]
    assert 'href="/runbooks/exporter-unreachable/"' in hint[:600]
    assert viewer_client.get("/runbooks/exporter-unreachable/").status_code == 200
    assert viewer_client.get("/runbooks/runner-no-ssh/").status_code == 200


def test_dispatch_waits_while_the_github_budget_is_low(settings: Any) -> None:
    settings.GITHUB_TOKEN = "ghp_unused"  # noqa: S105
    runner, _ = runner_with_token(NAME)
    run = HostRun.objects.create(
        runner=runner,
        kind=HostRun.Kind.DIAGNOSTICS,
        requested_by="sam-sre",
        deadline=timezone.now() + timedelta(minutes=10),
    )
    gateway_for(conf.repository()).budget = RateBudget(10, 5000, None)

    domain.dispatch(run.pk)

    run.refresh_from_db()
    assert run.state == HostRun.State.DISPATCHING
    assert run.github_run_id is None
    assert "waiting for GitHub API budget (10 calls left" in run.detail
    assert run.next_look_at > run.requested_at


@pytest.mark.parametrize(("runs", "queries"), [(1, 5), (12, 6), (30, 6)])
def test_diagnostics_summary_costs_the_same_queries_for_any_history(
    runs: int, queries: int, viewer_client: Client, django_assert_num_queries: Any
) -> None:
    runner, _ = runner_with_token(NAME)
    for _ in range(runs):
        HostRun.objects.create(
            runner=runner,
            kind=HostRun.Kind.DIAGNOSTICS,
            state=HostRun.State.SUCCEEDED,
            requested_by="sam-sre",
            deadline=timezone.now(),
            finished_at=timezone.now(),
            reported_at=timezone.now(),
            facts={"load1": 1},
        )
    viewer_client.get(f"/api/v1/runner-diagnostics/{NAME}/")  # warm the session
    # Session, user, role, the runner, its runs; and its last two reports when
    # there are more runs than the history shows.
    with django_assert_num_queries(queries):
        answer = viewer_client.get(f"/api/v1/runner-diagnostics/{NAME}/")
    assert answer.status_code == 200
    assert len(answer.json()["history"]) == min(runs, 10)
