"""The notification outbox: events become notifications, delivered to real HTTP
receivers with retries, backoff, a give-up, and one send per row under racing
deliverers."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.utils import timezone

from controlplane import notifications
from controlplane.models import Notification, NotificationCursor, TaskStatus
from controlplane.notifications import Kind, notify
from controlplane.tasks import deliver_notifications
from deploys import engine
from deploys.models import DeployAttempt, DeployEvent, DeployRun, Environment
from deploys.triggers import request_deploy
from runners.models import Runner, RunnerEvent, State
from tests.factories import make_env, pool_runner

SLACK_TOKEN = "T0SECRET/B0SECRET/slackhooktoken123"  # noqa: S105
POSTGRES = django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


class Receiver:
    """A local webhook receiver: records every POST, answers with scripted codes."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.codes: list[int] = []  # answers for the next requests, then 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with receiver.lock:
                    receiver.requests.append((self.path, body))
                    code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    r = Receiver()
    settings.NOTIFY_WEBHOOK_URLS = [r.url + "/generic"]
    settings.NOTIFY_SLACK_WEBHOOK_URLS = [f"{r.url}/services/{SLACK_TOKEN}"]
    settings.NOTIFY_SCAN_GRACE = 0.0
    settings.NOTIFY_RETRY_BASE = 10.0
    settings.NOTIFY_MAX_ATTEMPTS = 3
    settings.SITE_URL = "https://cp.example.com"
    yield r
    r.close()


@pytest.fixture
def json_only(receiver: Receiver, settings: Any) -> Receiver:
    settings.NOTIFY_SLACK_WEBHOOK_URLS = []
    return receiver


def production_pool(*runner_states: str) -> Environment:
    """Production, its pool one runner ``prod-N`` in each of ``runner_states``."""
    runners = [
        pool_runner(f"prod-{i}", state) for i, state in enumerate(runner_states, 1)
    ]
    return make_env("production", *runners)


@pytest.mark.django_db
@pytest.mark.usefixtures("github")
def test_deploy_waiting_then_failed_for_no_healthy_runner_notifies_both_targets(
    receiver: Receiver, sre: User
) -> None:
    env = production_pool(State.UNHEALTHY, State.UNKNOWN)
    env.gate_timeout = 60
    env.save()
    run = request_deploy(sre, env).run
    now = timezone.now()
    engine.advance(run.pk, now=now)
    engine.advance(run.pk, now=now)
    engine.advance(run.pk, now=now + timedelta(seconds=61))
    run.refresh_from_db()
    assert run.reason == DeployRun.Reason.NO_HEALTHY_RUNNER

    notifications.process(now + timedelta(seconds=62))

    generic = receiver.bodies("/generic")
    assert [b["kind"] for b in generic] == ["no_healthy_runner", "deploy_failed"]
    waiting, failed = generic
    assert waiting["severity"] == "critical"
    assert waiting["fields"]["runners"] == {
        "prod-1": "unhealthy (heartbeat stale)",
        "prod-2": "unknown (heartbeat stale)",
    }
    assert failed["subject"] == f"Deploy #{run.pk} of main to production failed"
    assert failed["fields"]["reason"] == "no_healthy_runner"
    assert failed["runbook_url"] == (
        "https://cp.example.com/runbooks/deploy-no-healthy-runner/"
    )
    assert failed["link"].startswith("https://cp.example.com/")
    assert str(run.pk) in failed["link"]
    assert len(receiver.bodies(f"/services/{SLACK_TOKEN}")) == 2
    assert set(Notification.objects.values_list("state", flat=True)) == {"sent"}


@pytest.mark.django_db
def test_slack_target_gets_text_and_blocks_with_links(receiver: Receiver) -> None:
    notify(
        Kind.SECRET_OVERDUE,
        "Secret DEPLOY_KEY is overdue for rotation",
        "Due 2026-11-01; owner platform.",
        "/secrets/3/",
        runbook="secret-overdue",
        dedupe_key="secret-overdue:3",
        secret="DEPLOY_KEY",
    )

    notifications.deliver_due()

    [body] = receiver.bodies(f"/services/{SLACK_TOKEN}")
    assert body["text"] == "[warning] Secret DEPLOY_KEY is overdue for rotation"
    kinds = [block["type"] for block in body["blocks"]]
    assert kinds == ["section", "section", "section", "context"]
    assert (
        "*Secret DEPLOY_KEY is overdue for rotation*"
        in (body["blocks"][0]["text"]["text"])
    )
    assert body["blocks"][2]["fields"] == [
        {"type": "mrkdwn", "text": "*secret*: DEPLOY_KEY"}
    ]
    links = body["blocks"][3]["elements"][0]["text"]
    assert "<https://cp.example.com/secrets/3/|Open>" in links
    assert "<https://cp.example.com/runbooks/secret-overdue/|Runbook>" in links


@pytest.mark.django_db
def test_notify_twice_with_one_dedupe_key_queues_one_row_per_target(
    receiver: Receiver, settings: Any
) -> None:
    for _ in range(2):
        notify(Kind.SECRET_MISSING, "Secret X missing", dedupe_key="missing:X")
    assert Notification.objects.count() == 2  # one per target
    settings.NOTIFY_WEBHOOK_URLS = []
    settings.NOTIFY_SLACK_WEBHOOK_URLS = []
    assert notify(Kind.SECRET_MISSING, "Secret Y missing") == 0
    assert Notification.objects.count() == 2


@pytest.mark.django_db
def test_the_beat_task_sends_and_records_its_run(json_only: Receiver) -> None:
    notify(Kind.SECRET_MISSING, "Secret X missing")

    deliver_notifications()

    assert [b["subject"] for b in json_only.bodies("/generic")] == ["Secret X missing"]
    assert TaskStatus.objects.get(name="notifications").last_success_at is not None


def make_failover() -> tuple[DeployRun, DeployEvent]:
    """A run whose first attempt failed over from prod-1 and whose second went to
    prod-2: the rows the engine writes."""
    env = production_pool(State.UNHEALTHY, State.HEALTHY)
    primary, secondary = (entry.runner for entry in env.pool())
    run = DeployRun.objects.create(environment=env, ref="v1.2.3", state="dispatching")
    DeployAttempt.objects.create(
        run=run,
        number=1,
        runner=primary,
        state="cancelled",
        failover_reason=DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
    )
    second = DeployAttempt.objects.create(run=run, number=2, runner=secondary)
    DeployEvent.objects.create(run=run, kind="failover", message="prod-1 unhealthy")
    event = DeployEvent.objects.create(
        run=run, attempt=second, kind="gate_passed", message="attempt 2 to prod-2"
    )
    return run, event


@pytest.mark.django_db
def test_failover_notification_names_both_runners_and_the_reason(
    json_only: Receiver,
) -> None:
    run, _ = make_failover()

    notifications.process()

    [body] = json_only.bodies("/generic")
    assert body["kind"] == "deploy_failover"
    assert body["subject"] == (
        f"Deploy #{run.pk} to production failed over from prod-1 to prod-2"
    )
    assert body["fields"] == {
        "deploy": run.pk,
        "environment": "production",
        "ref": "v1.2.3",
        "from_runner": "prod-1",
        "to_runner": "prod-2",
        "reason": "runner_unhealthy",
    }
    assert body["runbook_url"] == "https://cp.example.com/runbooks/deploy-failed-over/"


@pytest.mark.django_db
def test_runner_turning_unhealthy_and_recovering_notifies_other_changes_do_not(
    json_only: Receiver,
) -> None:
    runner = Runner.objects.create(name="linux-7")
    change = RunnerEvent.Kind.STATE_CHANGE
    for from_state, to_state in (
        ("healthy", "degraded"),  # not worth a page
        ("degraded", "unhealthy"),
        ("unhealthy", "healthy"),
    ):
        RunnerEvent.objects.create(
            runner=runner,
            kind=change,
            from_state=from_state,
            to_state=to_state,
            reasons=["heartbeat_stale"] if to_state == "unhealthy" else [],
        )
    RunnerEvent.objects.create(runner=runner, kind=RunnerEvent.Kind.DRAINED)

    notifications.process()

    down, up = json_only.bodies("/generic")
    assert down["kind"] == "runner_unhealthy"
    assert down["subject"] == "Runner linux-7 is unhealthy (heartbeat_stale)"
    assert down["link"] == "https://cp.example.com/fleet/linux-7/"
    assert down["runbook_url"].startswith("https://cp.example.com/runbooks/")
    assert up["kind"] == "runner_recovered"
    assert up["severity"] == "info"


@pytest.mark.django_db
def test_scan_waits_out_the_grace_period_and_never_notifies_an_event_twice(
    json_only: Receiver, settings: Any
) -> None:
    settings.NOTIFY_SCAN_GRACE = 10.0
    runner = Runner.objects.create(name="linux-8")
    event = RunnerEvent.objects.create(
        runner=runner, kind="state_change", from_state="healthy", to_state="unhealthy"
    )
    now = timezone.now()

    assert notifications.scan_events(now) == 0
    assert notifications.scan_events(now + timedelta(seconds=11)) == 1
    assert notifications.scan_events(now + timedelta(seconds=12)) == 0
    # A scanner that lost the cursor race re-reads the rows: the dedupe key holds.
    NotificationCursor.objects.update(last_id=0)
    notifications.scan_events(now + timedelta(seconds=13))

    assert Notification.objects.count() == 1
    assert NotificationCursor.objects.get(source="runner_events").last_id == event.pk


@pytest.mark.django_db
def test_a_500_is_retried_after_exponential_backoff(json_only: Receiver) -> None:
    json_only.codes = [500, 503]
    notify(Kind.SECRET_MISSING, "Secret X missing")
    [row] = Notification.objects.all()
    now = timezone.now()

    assert notifications.deliver_due(now) == 1
    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "HTTP 500")
    first_retry = row.next_attempt_at
    assert now + timedelta(seconds=9) < first_retry < now + timedelta(seconds=15)
    assert notifications.deliver_due(now + timedelta(seconds=5)) == 0

    notifications.deliver_due(first_retry)
    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_error) == ("pending", 2, "HTTP 503")
    # Twice the wait after the second failure.
    assert row.next_attempt_at - first_retry >= timedelta(seconds=19)

    notifications.deliver_due(row.next_attempt_at)
    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_error) == ("sent", 3, "")
    assert len(json_only.requests) == 3


@pytest.mark.django_db
def test_delivery_gives_up_after_max_attempts(json_only: Receiver) -> None:
    json_only.codes = [500] * 10
    notify(Kind.SECRET_MISSING, "Secret X missing")
    later = timezone.now()
    for _ in range(5):
        later += timedelta(hours=2)
        notifications.deliver_due(later)

    row = Notification.objects.get()
    assert (row.state, row.attempts, row.last_error) == ("failed", 3, "HTTP 500")
    assert len(json_only.requests) == 3


@pytest.mark.django_db
def test_an_unreachable_target_costs_one_attempt_per_tick_and_leaks_no_url(
    receiver: Receiver, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.close()  # nothing listens there any more
    settings.NOTIFY_WEBHOOK_URLS = []
    settings.NOTIFY_TIMEOUT = 1.0
    for n in range(3):
        notify(Kind.SECRET_MISSING, f"Secret {n} missing")

    with caplog.at_level(logging.WARNING):
        assert notifications.deliver_due() == 1

    attempts = sorted(Notification.objects.values_list("attempts", flat=True))
    assert attempts == [0, 0, 1]
    stored = json.dumps(list(Notification.objects.values()), default=str)
    assert "slackhooktoken123" not in stored
    assert "slackhooktoken123" not in caplog.text
    assert "cannot reach the target" in caplog.text


@pytest.mark.django_db
def test_a_removed_target_fails_its_rows_at_once(
    json_only: Receiver, settings: Any
) -> None:
    notify(Kind.SECRET_MISSING, "Secret X missing")
    settings.NOTIFY_WEBHOOK_URLS = [json_only.url + "/other"]

    notifications.deliver_due()

    row = Notification.objects.get()
    assert (row.state, row.last_error) == ("failed", "target no longer configured")
    assert json_only.requests == []


@pytest.mark.skipif(
    not POSTGRES, reason="needs PostgreSQL: SQLite runs one writer at a time"
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_deliverers_send_each_notification_once(
    json_only: Receiver,
) -> None:
    for n in range(20):
        notify(Kind.SECRET_MISSING, f"Secret {n} missing")
    start = threading.Barrier(8)
    claimed: list[int] = []

    def deliverer() -> None:
        from django.db import connection

        try:
            start.wait()
            claimed.append(notifications.deliver_due())
        finally:
            connection.close()

    threads = [threading.Thread(target=deliverer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(claimed) == 20
    subjects = sorted(body["subject"] for body in json_only.bodies("/generic"))
    assert subjects == sorted(f"Secret {n} missing" for n in range(20))
    assert set(Notification.objects.values_list("state", flat=True)) == {"sent"}


@pytest.mark.django_db
def test_deliverers_one_after_another_never_resend(json_only: Receiver) -> None:
    notify(Kind.SECRET_MISSING, "Secret X missing")
    row = Notification.objects.get()
    now = timezone.now()

    assert notifications.deliver(row.pk, now=now) is True
    assert notifications.deliver(row.pk, now=now) is None
    assert notifications.deliver_due(now + timedelta(days=1)) == 0
    assert len(json_only.requests) == 1


@pytest.mark.django_db
def test_many_runners_failing_at_once_send_one_summary(
    json_only: Receiver, settings: Any
) -> None:
    settings.NOTIFY_RUNNER_STORM = 5
    runners = [Runner.objects.create(name=f"rack-{n:02d}") for n in range(7)]
    RunnerEvent.objects.bulk_create(
        RunnerEvent(
            runner=runner,
            kind="state_change",
            from_state="healthy",
            to_state="unhealthy",
            reasons=["heartbeat_stale"],
        )
        for runner in runners
    )
    for runner in runners[:2]:
        RunnerEvent.objects.create(
            runner=runner,
            kind="state_change",
            from_state="unhealthy",
            to_state="healthy",
        )

    notifications.process()

    bodies = json_only.bodies("/generic")
    assert sorted(b["kind"] for b in bodies) == [
        "runner_recovered",
        "runner_recovered",
        "runner_unhealthy",
    ]
    [storm] = [b for b in bodies if b["kind"] == "runner_unhealthy"]
    assert storm["subject"] == "7 runners became unhealthy"
    assert storm["message"] == ", ".join(f"rack-{n:02d}" for n in range(7))
    assert storm["fields"] == {"runners": 7, "reasons": ["heartbeat_stale"]}
    assert storm["link"] == "https://cp.example.com/fleet/"


@pytest.mark.django_db
def test_old_sent_and_failed_notifications_are_pruned_once_an_hour(
    json_only: Receiver, settings: Any
) -> None:
    settings.NOTIFY_RETENTION_DAYS = 30
    now = timezone.now()
    for n, (state, age) in enumerate(
        [("sent", 31), ("failed", 31), ("pending", 31), ("sent", 29)]
    ):
        Notification.objects.create(
            kind="secret_missing",
            severity="critical",
            subject=f"old {n}",
            dedupe_key=f"old:{n}",
            target="json:x",
            state=state,
            created_at=now - timedelta(days=age),
            next_attempt_at=now + timedelta(days=1),
        )

    assert notifications.prune(now) == 2
    Notification.objects.filter(subject="old 3").update(
        created_at=now - timedelta(days=40)
    )
    assert notifications.prune(now + timedelta(minutes=30)) == 0
    assert notifications.prune(now + timedelta(minutes=61)) == 1
    assert sorted(Notification.objects.values_list("subject", flat=True)) == ["old 2"]


@pytest.mark.django_db
def test_beat_schedules_the_delivery_every_five_seconds() -> None:
    from django_celery_beat.models import PeriodicTask

    from controlplane.celery import app

    task = PeriodicTask.objects.get(name="Deliver notifications")
    assert task.task == "controlplane.tasks.deliver_notifications"
    assert task.task in app.tasks
    assert task.interval is not None
    assert (task.interval.every, task.interval.period) == (5, "seconds")
    assert task.enabled
