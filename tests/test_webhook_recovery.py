"""Recovering missed webhook deliveries from the hook's delivery log: the real gateway
against the GitHub simulator, whose webhook points at a control plane that is down."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from controlplane.github import gateway
from controlplane.models import TaskStatus
from deploys import webhook_recovery
from deploys.models import WebhookDelivery, WebhookHook, WebhookRedelivery
from deploys.tasks import recover_webhooks
from githubsim import Simulator
from githubsim.webhooks import HOOK_ID
from tests.conftest import ROOT
from tests.simhttp import Captured, dispatch

REPO = "acme/deploy"
DOWN = "http://127.0.0.1:9"
HOOKS = "GET /repos/{owner}/{repo}/hooks"
LOG = "GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries"
ATTEMPTS = (
    "POST /repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}/attempts"
)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.sim(
        time_scale=1,
        demo=True,
        seed=3,
        webhook_url=f"{DOWN}/github/webhook",
        webhook_secret="s",
        connect=True,
        max_retries=1,
        settings={
            "GITHUB_ORGANIZATION": "",
            "GITHUB_WEBHOOK_SCOPE": "repository",
            "GITHUB_WEBHOOK_HOOK_ID": 0,
            "SITE_URL": DOWN,
            "WEBHOOK_RECOVERY_MAX_REQUESTS": 50,
            "WEBHOOK_REDELIVERY_MAX_ATTEMPTS": 3,
        },
    ),
]


def missed_while_down(sim: Simulator) -> list[str]:
    """A dispatch while the control plane is down: ping, run requested, job queued
    all fail. Returns their guids, oldest first."""
    dispatch(sim, "nobody")  # no such runner: the job stays queued, no more events
    assert sim.webhooks.wait_idle(15)
    return [r["guid"] for r in reversed(sim.state.deliveries())]


def test_gateway_reads_the_log_page_by_page_with_the_cursor(sim: Simulator) -> None:
    assert sim.webhooks.wait_idle(15)  # the set-up ping is logged first
    for number in range(150):
        sim.state.log_delivery(
            guid=f"guid-{number}",
            event="workflow_job",
            payload={"action": "queued"},
            redelivery=False,
            status_code=0,
            status="failed to connect to host",
            duration=0.1,
            request_headers={},
            response_headers={},
            response_body="",
        )
    gw = gateway()
    [hook] = gw.list_hooks("repository")
    assert hook.id == HOOK_ID and hook.url == f"{DOWN}/github/webhook"

    first = gw.list_hook_deliveries("repository", hook.id)
    second = gw.list_hook_deliveries("repository", hook.id, cursor=first.next_cursor)

    assert [d.guid for d in first.deliveries[:2]] == ["guid-149", "guid-148"]
    assert len(first.deliveries) == 100 and first.next_cursor
    # 50 more, then the ping the simulator sent when the hook was set up.
    assert len(second.deliveries) == 51 and second.next_cursor is None
    assert second.deliveries[-2].guid == "guid-0"
    assert second.deliveries[-1].event == "ping"
    assert not any(d.succeeded for d in second.deliveries)


def test_every_missed_delivery_is_redelivered_once_and_the_hook_remembered(
    sim: Simulator,
) -> None:
    guids = missed_while_down(sim)

    result = webhook_recovery.recover()

    assert result.missed == 3 and result.redelivered == 3 and result.complete
    assert sim.state.request_count(HOOKS) == 1
    assert sim.state.request_count(ATTEMPTS) == 3
    asked = dict(WebhookRedelivery.objects.values_list("guid", "attempts"))
    assert asked == {guid: 1 for guid in guids}
    hook = WebhookHook.objects.get()
    assert (hook.scope, hook.owner, hook.hook_id) == ("repository", REPO, HOOK_ID)
    assert hook.checked_until is not None
    # The redeliveries failed too (still down); a pass right after asks nothing.
    assert sim.webhooks.wait_idle(15)
    again = webhook_recovery.recover()
    assert again.redelivered == 0
    assert sim.state.request_count(HOOKS) == 1
    assert sim.state.request_count(ATTEMPTS) == 3


def test_a_failed_event_is_asked_again_after_the_backoff_up_to_the_limit(
    sim: Simulator, settings: Any
) -> None:
    settings.WEBHOOK_REDELIVERY_MAX_ATTEMPTS = 2
    missed_while_down(sim)
    now = timezone.now()
    later = now + webhook_recovery.REDELIVERY_BACKOFF + timedelta(seconds=1)
    much_later = later + webhook_recovery.REDELIVERY_BACKOFF + timedelta(seconds=1)

    counts = []
    for moment in (now, later, much_later):
        counts.append(webhook_recovery.recover(moment).redelivered)
        assert sim.webhooks.wait_idle(15)

    assert counts == [3, 3, 0]
    assert set(WebhookRedelivery.objects.values_list("attempts", flat=True)) == {2}


def test_events_received_or_delivered_are_never_redelivered(sim: Simulator) -> None:
    ping, run, job = missed_while_down(sim)
    # The run event reached us after all (stored, even if refused as malformed).
    WebhookDelivery.objects.create(
        delivery_id=run,
        event="workflow_run",
        payload=None,
        outcome=WebhookDelivery.Outcome.FAILED,
        error="body is not a JSON object",
    )
    # The job event was redelivered successfully by someone in GitHub's UI.
    [entry] = [r for r in sim.state.deliveries() if r["guid"] == job]
    sim.state.log_delivery(
        **{
            **{k: entry[k] for k in ("guid", "event", "payload", "duration")},
            "redelivery": True,
            "status_code": 202,
            "status": "OK",
            "request_headers": {},
            "response_headers": {},
            "response_body": "",
        }
    )

    result = webhook_recovery.recover()

    assert result.redelivered == 1
    assert list(WebhookRedelivery.objects.values_list("guid", flat=True)) == [ping]


def test_a_pass_stops_at_its_request_cap_and_keeps_its_mark(
    sim: Simulator, settings: Any
) -> None:
    settings.GITHUB_WEBHOOK_HOOK_ID = HOOK_ID  # configured: no hook list call
    settings.WEBHOOK_RECOVERY_MAX_REQUESTS = 2
    missed_while_down(sim)

    result = webhook_recovery.recover()

    assert sim.state.request_count(HOOKS) == 0
    assert result.requests == 2 and result.redelivered == 1
    assert not result.complete and "WEBHOOK_RECOVERY_MAX_REQUESTS" in result.stopped
    assert WebhookHook.objects.get().checked_until is None


def fail_many(sim: Simulator, count: int) -> set[str]:
    guids = set()
    for number in range(count):
        guid = f"missed-{number}"
        guids.add(guid)
        sim.state.log_delivery(
            guid=guid,
            event="workflow_job",
            payload={"action": "completed"},
            redelivery=False,
            status_code=0,
            status="failed to connect to host",
            duration=0.1,
            request_headers={},
            response_headers={},
            response_body="",
        )
    return guids


def test_a_backlog_longer_than_a_pass_shrinks_every_pass_from_where_it_stopped(
    sim: Simulator, settings: Any
) -> None:
    assert sim.webhooks.wait_idle(15)
    up = Captured()  # the control plane is back and takes every redelivery
    sim.set_webhook(up.url, "s")
    settings.GITHUB_WEBHOOK_HOOK_ID = HOOK_ID
    # Each pass may read 3 pages or ask 3 redeliveries, however the log grows.
    settings.WEBHOOK_RECOVERY_MAX_REQUESTS = 8
    guids = fail_many(sim, 450) | {sim.state.deliveries()[-1]["guid"]}  # the ping
    now = timezone.now()
    asked: list[int] = []
    pages: list[int] = []
    for number in range(200):
        before = sim.state.request_count(LOG)
        result = webhook_recovery.recover(now + number * timedelta(minutes=5))
        pages.append(sim.state.request_count(LOG) - before)
        asked.append(result.redelivered)
        assert sim.webhooks.wait_idle(15)
        if result.complete:
            break

    assert result.complete, (asked, pages)
    assert set(WebhookRedelivery.objects.values_list("guid", flat=True)) == guids
    assert set(WebhookRedelivery.objects.values_list("attempts", flat=True)) == {1}
    # Every pass but the last made progress; none re-read the whole log.
    assert all(n > 0 for n in asked[:-1]), asked
    assert max(pages) <= 3, pages
    hook = WebhookHook.objects.get()
    assert hook.resume_cursor == "" and hook.checked_until is not None
    up.close()


def test_a_pass_leaves_the_last_tenth_of_the_api_budget_alone(
    sim: Simulator,
) -> None:
    missed_while_down(sim)
    sim.configure(rate_limit=20)
    sim.state.limits.reset()
    gw = gateway()
    for _ in range(18):  # others spent the budget down to 2 of 20
        gw.rate_limit()
        gw.list_run_jobs(10_000_001)  # not conditional: each read is charged

    result = webhook_recovery.recover()

    assert result.redelivered == 0
    assert "budget" in result.stopped
    assert sim.state.request_count(ATTEMPTS) == 0


def test_no_hook_delivering_to_us_is_an_error_the_task_records(
    sim: Simulator, settings: Any
) -> None:
    settings.SITE_URL = "https://cp.example.com"

    with pytest.raises(webhook_recovery.RecoveryError, match="cp.example.com"):
        recover_webhooks()

    status = TaskStatus.objects.get(name="webhook_recovery")
    assert "GITHUB_WEBHOOK_HOOK_ID" in status.last_error


def test_a_deleted_hook_is_forgotten_and_found_again(sim: Simulator) -> None:
    WebhookHook.objects.create(scope="repository", owner=REPO, hook_id=999)

    with pytest.raises(webhook_recovery.RecoveryError, match="hook 999 is gone"):
        webhook_recovery.recover()

    assert not WebhookHook.objects.exists()
    missed_while_down(sim)
    assert webhook_recovery.recover().redelivered == 3


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"GITHUB_WEBHOOK_SCOPE": "enterprise"}, "must be repository or organization"),
        ({"GITHUB_WEBHOOK_SCOPE": "organization"}, "needs GITHUB_ORGANIZATION"),
        ({"WEBHOOK_RETENTION_DAYS": "2"}, "WEBHOOK_RETENTION_DAYS"),
    ],
)
def test_bad_webhook_settings_stop_start_up_naming_the_variable(
    variables: dict[str, str], message: str
) -> None:
    env = {**os.environ, "GITHUB_ORGANIZATION": "", **variables}
    result = subprocess.run(
        [sys.executable, "-c", "import controlplane.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_an_organization_hook_is_found_and_read_on_the_organization(
    sim: Simulator, settings: Any
) -> None:
    sim.configure(webhook_scope="organization")
    settings.GITHUB_ORGANIZATION = "acme"
    settings.GITHUB_WEBHOOK_SCOPE = "organization"
    missed_while_down(sim)

    result = webhook_recovery.recover()

    assert result.redelivered == 3
    assert sim.state.request_count("GET /orgs/{org}/hooks") == 1
    assert (
        sim.state.request_count(
            ATTEMPTS.replace("/repos/{owner}/{repo}", "/orgs/{org}")
        )
        == 3
    )
    assert sim.state.request_count(ATTEMPTS) == 0
    hook = WebhookHook.objects.get()
    assert (hook.scope, hook.owner) == ("organization", "acme")
