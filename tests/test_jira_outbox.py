"""A finished deploy's outcome on its JIRA change ticket, against a fake JIRA server
through the real ``jira`` library: commented with a link back to the deploy, then
transitioned if configured; a failing JIRA never holds or fails the deploy, is
retried with backoff and shows on the deploy page, in /metrics and, when the outbox
gives up, in a notification."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.models import Notification, NotificationCursor
from deploys import ticket_outbox
from deploys.models import DeployRun, Environment, TicketUpdate
from deploys.triggers import request_deploy
from githubsim import Simulator
from tests.conftest import logged_in
from tests.deploying import Clock, drive, final, simulated_env
from tests.factories import make_env, pool_runner
from tests.fakejira import FakeJira, connected

pytestmark = pytest.mark.django_db


@pytest.fixture
def jira(settings: Any) -> Iterator[FakeJira]:
    with connected(settings) as fake:
        settings.NOTIFY_SCAN_GRACE = 0
        settings.JIRA_RETRY_BASE = 30
        yield fake


def later(seconds: float = 1) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


def finished_run(ticket: str, state: str = DeployRun.State.SUCCEEDED) -> DeployRun:
    """A deploy to production requested with ``ticket`` that ended in ``state``."""
    env = Environment.objects.filter(name="production").first() or make_env(
        "production", pool_runner("prod-1")
    )
    run = DeployRun.objects.create(
        environment=env,
        ref="main",
        sha="a" * 40,
        requester_name="sam-sre",
        change_ticket=ticket,
    )
    reason = "" if state == DeployRun.State.SUCCEEDED else "deploy_failed"
    run.finish(state, reason, "the Deploy step failed", timezone.now())
    run.refresh_from_db()
    return run


def test_the_outcome_is_commented_with_a_link_back_then_transitioned(
    jira: FakeJira, settings: Any
) -> None:
    settings.JIRA_TRANSITION_ON_SUCCESS = "Deployed"
    jira.add_issue("INFRA-473", "In Progress", Deployed="Done", Reopen="Open")
    run = finished_run("INFRA-473")

    created, claimed = ticket_outbox.process(later())

    assert (created, claimed) == (1, 1)
    [comment] = jira.comments("INFRA-473")
    assert comment.splitlines() == [
        f"Deploy #{run.pk} of main (aaaaaaaaaaaa) to production succeeded.",
        f"Requested by sam-sre at {run.created_at:%Y-%m-%d %H:%M} UTC; finished at "
        f"{run.finished_at:%Y-%m-%d %H:%M} UTC.",
        f"Deploy: {settings.SITE_URL}/deploys/{run.pk}/",
    ]
    assert jira.issues["INFRA-473"].status == "Done"
    update = TicketUpdate.objects.get()
    assert (update.state, update.attempts, update.last_error) == ("sent", 1, "")
    assert update.transitioned_at is not None


def test_a_failed_deploy_says_why_and_a_cancelled_one_takes_no_transition(
    jira: FakeJira, settings: Any
) -> None:
    settings.JIRA_TRANSITION_ON_SUCCESS = "Deployed"
    jira.add_issue("INFRA-1", "Approved", Deployed="Done")
    jira.add_issue("INFRA-2", "Approved", Deployed="Done")
    failed = finished_run("INFRA-1", DeployRun.State.FAILED)
    finished_run("INFRA-2", DeployRun.State.CANCELLED)

    ticket_outbox.process(later())

    assert jira.comments("INFRA-1")[0].splitlines()[:2] == [
        f"Deploy #{failed.pk} of main (aaaaaaaaaaaa) to production failed.",
        "Reason: a deploy step failed: the Deploy step failed",
    ]
    assert "was cancelled." in jira.comments("INFRA-2")[0]
    # No failure transition is configured, and a cancel never moves the ticket.
    assert {i.status for i in jira.issues.values()} == {"Approved"}
    assert set(TicketUpdate.objects.values_list("state", flat=True)) == {"sent"}


@pytest.mark.sim(time_scale=600, pickup_delay=5, job_duration=20, connect=True)
def test_a_failing_comment_never_holds_the_deploy_and_succeeds_on_retry(
    jira: FakeJira, sim: Simulator, sre: User, admin_user: User
) -> None:
    jira.add_issue("INFRA-7", "Approved")
    env = simulated_env(sim)
    run = request_deploy(sre, env, "main", "INFRA-7").run
    # JIRA starts failing once the request was checked.
    jira.fail_next(1, 503)

    run = drive(run, final, Clock())
    first = later()
    ticket_outbox.process(first)

    assert run.state == DeployRun.State.SUCCEEDED
    update = TicketUpdate.objects.get(run=run)
    assert (update.state, update.attempts) == ("pending", 1)
    assert update.last_error == "JIRA answered HTTP 503 about INFRA-7"
    assert update.next_attempt_at == first + timedelta(seconds=30)
    assert jira.comments("INFRA-7") == []
    metrics = logged_in(admin_user).get("/metrics").content.decode()
    assert "controlplane_change_ticket_updates_retrying 1.0" in metrics
    page = logged_in(sre).get(f"/deploys/{run.pk}/").content.decode()
    assert "outcome comment retrying" in page
    assert "attempt 1 failed: JIRA answered HTTP 503 about INFRA-7" in page

    # Not due yet: nothing is sent; after the backoff, the comment goes once.
    assert ticket_outbox.send_due(first + timedelta(seconds=29)) == 0
    assert ticket_outbox.send_due(first + timedelta(seconds=31)) == 1

    update.refresh_from_db()
    assert (update.state, update.attempts, update.last_error) == ("sent", 2, "")
    assert len(jira.comments("INFRA-7")) == 1
    metrics = logged_in(admin_user).get("/metrics").content.decode()
    assert "controlplane_change_ticket_updates_retrying 0.0" in metrics
    assert 'controlplane_change_ticket_updates{state="sent"} 1.0' in metrics


def test_a_failed_transition_is_retried_without_commenting_twice(
    jira: FakeJira, settings: Any
) -> None:
    settings.JIRA_TRANSITION_ON_FAILURE = "Roll back"
    issue = jira.add_issue("INFRA-8", "In Progress", Close="Closed")
    finished_run("INFRA-8", DeployRun.State.FAILED)

    first = later()
    ticket_outbox.process(first)
    update = TicketUpdate.objects.get()
    assert update.state == "pending"
    assert update.commented_at is not None
    assert update.last_error == (
        "INFRA-8 has no transition named 'Roll back' now (available: Close)"
    )
    issue.transitions["Roll back"] = "Rolled back"
    ticket_outbox.send_due(first + timedelta(seconds=31))

    update.refresh_from_db()
    assert update.state == "sent"
    assert len(jira.comments("INFRA-8")) == 1
    assert issue.status == "Rolled back"


def test_it_gives_up_after_max_attempts_and_tells_sres(
    jira: FakeJira, settings: Any, sre: User
) -> None:
    settings.JIRA_MAX_ATTEMPTS = 2
    settings.NOTIFY_WEBHOOK_URLS = ["http://127.0.0.1:9/hook"]
    jira.add_issue("INFRA-9", "Approved")
    run = finished_run("INFRA-9")
    jira.forbidden = True

    first = later()
    ticket_outbox.process(first)
    ticket_outbox.send_due(first + timedelta(seconds=31))

    update = TicketUpdate.objects.get()
    assert (update.state, update.attempts) == ("failed", 2)
    notification = Notification.objects.get(kind="change_ticket_failed")
    assert notification.subject == (
        f"JIRA ticket INFRA-9 was not updated with deploy #{run.pk}'s outcome"
    )
    assert notification.link.endswith(f"/deploys/{run.pk}/")
    assert notification.fields == {
        "deploy": run.pk,
        "ticket": "INFRA-9",
        "outcome": "succeeded",
    }
    page = logged_in(sre).get(f"/deploys/{run.pk}/").content.decode()
    assert "outcome not commented" in page
    assert "gave up after 2 attempts: JIRA refused access (HTTP 403)" in page
    # Given up: never tried again.
    assert ticket_outbox.send_due(first + timedelta(days=1)) == 0


def test_while_jira_is_down_a_tick_spends_one_attempt(jira: FakeJira) -> None:
    for number in (1, 2, 3):
        jira.add_issue(f"INFRA-{number}", "Approved")
        finished_run(f"INFRA-{number}")
    jira.stop()

    created, claimed = ticket_outbox.process(later())

    assert (created, claimed) == (3, 1)
    assert list(
        TicketUpdate.objects.order_by("pk").values_list("attempts", flat=True)
    ) == [1, 0, 0]


def test_only_issue_keys_with_jira_configured_become_updates(
    jira: FakeJira, settings: Any
) -> None:
    finished_run("")
    finished_run("CHG0001")
    finished_run("INFRA-3")

    assert ticket_outbox.scan(later()) == 1
    # A rescan creates nothing, and without JIRA_URL the mark moves on, silent.
    assert ticket_outbox.scan(later()) == 0
    settings.JIRA_URL = ""
    finished_run("INFRA-4")
    assert ticket_outbox.scan(later()) == 0
    assert list(TicketUpdate.objects.values_list("ticket", flat=True)) == ["INFRA-3"]


def test_events_inside_the_grace_period_wait_for_the_next_scan(
    jira: FakeJira, settings: Any
) -> None:
    settings.NOTIFY_SCAN_GRACE = 10
    finished_run("INFRA-5")

    assert ticket_outbox.scan(timezone.now()) == 0
    assert ticket_outbox.scan(later(11)) == 1


@pytest.mark.parametrize("runs", [1, 20])
def test_a_scan_costs_the_same_queries_whatever_the_number_of_deploys(
    jira: FakeJira, runs: int
) -> None:
    for number in range(runs):
        finished_run(f"INFRA-{number + 1}")
    ticket_outbox.scan(later())  # creates the cursor
    for number in range(runs):
        finished_run(f"OPS-{number + 1}")

    with CaptureQueriesContext(connection) as queries:
        assert ticket_outbox.scan(later()) == runs

    # Cursor, events, one insert, the mark (and the transaction's savepoints).
    assert len(queries) == 6, [q["sql"] for q in queries.captured_queries]


def test_the_deploy_page_links_the_ticket_in_jira(
    jira: FakeJira, sre: User, settings: Any
) -> None:
    jira.add_issue("INFRA-473", "Approved")
    run = finished_run("INFRA-473")
    ticket_outbox.process(later())

    page = logged_in(sre).get(f"/deploys/{run.pk}/").content.decode()

    assert f'href="{jira.url}/browse/INFRA-473"' in page
    assert "outcome commented" in page
    settings.JIRA_URL = ""
    page = logged_in(sre).get(f"/deploys/{run.pk}/").content.decode()
    assert "/browse/INFRA-473" not in page
    assert "INFRA-473" in page


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_deploys_that_ended_before_the_upgrade_are_never_sent(
    jira: FakeJira,
) -> None:
    before = [("deploys", "0021_run_timeouts_pause_details_production")]
    after = list(MigrationExecutor(connection).loader.graph.leaf_nodes())
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = MigrationExecutor(connection).loader.project_state(before).apps
    env = old.get_model("deploys", "Environment").objects.create(
        name="production", repository="acme/deploy"
    )
    run = old.get_model("deploys", "DeployRun").objects.create(
        environment=env, ref="main", change_ticket="INFRA-1", state="succeeded"
    )
    event = old.get_model("deploys", "DeployEvent").objects.create(
        run=run, kind="succeeded", created_at=timezone.now() - timedelta(days=1)
    )
    NotificationCursor.objects.filter(source="change_tickets").delete()

    MigrationExecutor(connection).migrate(after)

    assert ticket_outbox.scan(later()) == 0
    assert NotificationCursor.objects.get(source="change_tickets").last_id == event.pk
    jira.add_issue("INFRA-2", "Approved")
    assert ticket_outbox.scan(later()) == 0
    finished_run("INFRA-2")
    assert ticket_outbox.scan(later()) == 1
