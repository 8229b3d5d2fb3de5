"""Several Celery beats: one leads, the others stand by and take over when it dies.

The scheduler's tests drive LeaderScheduler in this process against the test
database. The end-to-end test runs two real beat processes and a real worker on the suite's
database and broker (SQLite and the filesystem broker, or PostgreSQL and Redis),
kills the leading beat with SIGKILL and checks that the standby leads within 30 s,
that the health sweep goes on, and that no periodic task was sent twice in one of
its periods across both beats' logs.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from controlplane.beat import LeaderScheduler
from controlplane.celery import app as celery_app
from controlplane.models import BEAT_LEASE, Lease
from tests.conftest import logged_in, manage_shell
from tests.processes import start, stop

# Beat starts, reads its schedule and takes the free lease within this.
START_WAIT_SECONDS = 60
# The promise for a standby replacing a dead leader.
TAKEOVER_SECONDS = 30
# Log lines as settings.LOGGING formats them: "2026-12-02 02:17:43,218 INFO name [-] …".
LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d [\d:]+,\d{3}) (?P<message>.*)$", re.MULTILINE
)
SEND = re.compile(r"Scheduler: Sending due task (?P<name>.+) \([\w.]+\)$")
# The jobs this test watches; the others call GitHub or exporters, absent here.
KEPT_TASKS = [
    "runners.tasks.sweep_health",
    "controlplane.tasks.beat_tick",
    "controlplane.tasks.deliver_notifications",
    "deploys.tasks.reconcile_deploys",
    "runners.tasks.prune_health_history",
    "deploys.tasks.prune_idempotency_keys",
]

# The hourly jobs last ran two hours ago: the first leader sends them at once, and a
# successor trusting the schedule it read at start-up would send them again.
ARRANGE = f"""
import datetime, json
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
PeriodicTask.objects.exclude(task__in={KEPT_TASKS!r}).update(enabled=False)
PeriodicTask.objects.filter(interval__period="hours").update(
    last_run_at=timezone.now() - datetime.timedelta(hours=2)
)
print(json.dumps({{
    task.name: task.interval.schedule.run_every.total_seconds()
    for task in PeriodicTask.objects.filter(enabled=True)
}}))
"""
READ_STATE = """
import json
from controlplane.models import Lease, TaskStatus
sweep = TaskStatus.objects.filter(name="health_sweep").first()
print(json.dumps({
    "leader": Lease.objects.holder_of("beat"),
    "sweep": sweep.last_success_at.isoformat() if sweep and sweep.last_success_at
    else None,
}))
"""


def read_state(env: dict[str, str]) -> dict[str, str | None]:
    state: dict[str, str | None] = json.loads(manage_shell(env, READ_STATE))
    return state


def wait_for(
    what: str, check: Callable[[], object], seconds: float, logs: Path
) -> None:
    """Poll ``check()`` until true; fail with the logs after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    dump = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in logs.glob("*.log"))
    pytest.fail(f"not within {seconds} s: {what}\n{dump}")


def log_lines(log: Path) -> list[tuple[datetime, str]]:
    """Each line of a Celery log with its timestamp."""
    return [
        (datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S,%f"), m["message"])
        for m in LINE.finditer(log.read_text())
    ]


def sends(log: Path) -> list[tuple[datetime, str]]:
    """(when, periodic task name) of each task a beat sent."""
    return [
        (at, m["name"]) for at, message in log_lines(log) if (m := SEND.search(message))
    ]


def make_hourly_task(*, last_run_at: datetime) -> PeriodicTask:
    """The only enabled periodic task: hourly, last run at ``last_run_at``."""
    PeriodicTask.objects.update(enabled=False)
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    return PeriodicTask.objects.create(
        name="Hourly job",
        task="controlplane.tasks.beat_tick",
        interval=hourly,
        queue="health",
        last_run_at=last_run_at,
    )


def sent(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Sending due task" in r.message]


def run_ticks(scheduler: LeaderScheduler, count: int = 3) -> float:
    """A few ticks, as beat's loop makes them; the last tick's wait."""
    wait = 0.0
    for _ in range(count):
        wait = scheduler.tick()
    return wait


@pytest.fixture
def two_hours_ago() -> datetime:
    two_hours: datetime = timezone.now() - timedelta(hours=2)
    return two_hours


# Transactional: beat, like any long-running process, drops a connection that is not
# in autocommit mode (close_old_connections), which the test's own transaction is.
in_autocommit = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@in_autocommit
def test_a_standby_sends_nothing_and_writes_no_schedule_while_another_leads(
    two_hours_ago: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    task = make_hourly_task(last_run_at=two_hours_ago)
    Lease.objects.acquire(BEAT_LEASE, "other-host:1", seconds=15)
    scheduler = LeaderScheduler(app=celery_app, max_interval=1)

    wait = run_ticks(scheduler)

    assert wait == 1.0  # tries again at the next poll
    assert not scheduler.leading
    assert sent(caplog) == []
    task.refresh_from_db()
    assert (task.last_run_at, task.total_run_count) == (two_hours_ago, 0)
    assert "beat: standing by (leader is other-host:1)" in caplog.text


@in_autocommit
def test_the_leader_writes_last_run_at_before_the_task_is_sent(
    two_hours_ago: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    task = make_hourly_task(last_run_at=two_hours_ago)
    scheduler = LeaderScheduler(app=celery_app, max_interval=1)

    run_ticks(scheduler)

    assert scheduler.leading
    assert Lease.objects.holder_of(BEAT_LEASE) == scheduler.holder
    assert sent(caplog) == [
        "Scheduler: Sending due task Hourly job (controlplane.tasks.beat_tick)"
    ]
    # No sync has run: the row was written when the run was reserved.
    assert scheduler._dirty == set()
    task.refresh_from_db()
    assert task.total_run_count == 1
    assert task.last_run_at > two_hours_ago


@in_autocommit
def test_a_new_leader_reads_what_the_previous_leader_ran_and_does_not_repeat_it(
    two_hours_ago: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    task = make_hourly_task(last_run_at=two_hours_ago)
    Lease.objects.acquire(BEAT_LEASE, "other-host:1", seconds=15)
    # Starts while the other leads: its schedule says the job is two hours overdue.
    scheduler = LeaderScheduler(app=celery_app, max_interval=1)
    run_ticks(scheduler)
    # The other leader runs the job, then dies; its lease lapses.
    PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=timezone.now())
    Lease.objects.release(BEAT_LEASE, "other-host:1")

    run_ticks(scheduler)

    assert scheduler.leading
    assert sent(caplog) == []


@in_autocommit
def test_a_leader_whose_lease_was_taken_stops_sending(
    two_hours_ago: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    task = make_hourly_task(last_run_at=timezone.now())
    scheduler = LeaderScheduler(app=celery_app, max_interval=1)
    run_ticks(scheduler)
    assert Lease.objects.holder_of(BEAT_LEASE) == scheduler.holder
    # It stalled past its lease and another beat took over; then the job became due
    # (an admin's edit, which every beat's schedule picks up).
    Lease.objects.release(BEAT_LEASE, scheduler.holder)
    Lease.objects.acquire(BEAT_LEASE, "other-host:1", seconds=15)
    task.last_run_at = two_hours_ago
    task.save()

    run_ticks(scheduler)

    assert not scheduler.leading
    assert sent(caplog) == []
    assert "beat: lost leadership" in caplog.text


@in_autocommit
def test_a_leader_stopping_cleanly_hands_the_lease_over_at_once() -> None:
    scheduler = LeaderScheduler(app=celery_app, max_interval=1)
    run_ticks(scheduler, 1)
    assert Lease.objects.holder_of(BEAT_LEASE) == scheduler.holder

    scheduler.close()

    assert Lease.objects.holder_of(BEAT_LEASE) is None
    assert Lease.objects.acquire(BEAT_LEASE, "other-host:1", seconds=15)
    # A stop that a broker client swallowed mid-send still ends beat's loop.
    with pytest.raises(SystemExit):
        scheduler.tick()


@in_autocommit
def test_a_stop_that_closes_the_database_under_a_query_ends_beat_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduler = LeaderScheduler(app=celery_app, max_interval=1)
    run_ticks(scheduler, 1)

    def interrupted(*args: object, **kwargs: object) -> float:
        # What SIGTERM mid-query leaves: the handler closed the scheduler and its
        # connection, and the query it interrupted fails on the closed database.
        scheduler.closed = True
        raise sqlite3.ProgrammingError("Cannot operate on a closed database.")

    monkeypatch.setattr(DatabaseScheduler, "tick", interrupted)

    with pytest.raises(SystemExit):
        scheduler.tick()


@in_autocommit
def test_an_unexpected_error_while_running_still_surfaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduler = LeaderScheduler(app=celery_app, max_interval=1)
    run_ticks(scheduler, 1)

    def broken(*args: object, **kwargs: object) -> float:
        raise ValueError("a bug")

    monkeypatch.setattr(DatabaseScheduler, "tick", broken)

    with pytest.raises(ValueError, match="a bug"):
        scheduler.tick()


def test_the_home_page_and_metrics_name_the_leading_beat(
    viewer: User, client: Client
) -> None:
    Lease.objects.acquire(BEAT_LEASE, "beat-host:7", seconds=15)

    html = logged_in(viewer).get("/").content.decode()
    metrics = client.get("/metrics").content.decode()

    assert '<span class="mono">beat-host:7</span>' in html
    assert 'controlplane_beat_leader_info{holder="beat-host:7"} 1.0' in metrics


def test_without_a_leader_the_home_page_says_no_task_is_sent(
    viewer: User, client: Client
) -> None:
    Lease.objects.acquire(BEAT_LEASE, "beat-host:7", seconds=15)
    Lease.objects.release(BEAT_LEASE, "beat-host:7")

    html = logged_in(viewer).get("/").content.decode()
    metrics = client.get("/metrics").content.decode()

    assert "no beat holds the lease, so no periodic task is sent" in html
    assert "controlplane_beat_leader_info{" not in metrics


@pytest.fixture
def worker(process_env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    process = start(
        process_env,
        "worker",
        "-Q",
        "deploys,health",
        "--pool",
        "solo",
        "--hostname",
        f"test-{tmp_path.name}@%h",
        "--without-mingle",
        "--without-gossip",
        "--loglevel",
        "INFO",
        log=tmp_path / "worker.log",
    )
    yield
    stop(process, tmp_path)


def start_beat(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # --max-interval 1: a standby tries the lease every second, not every 5.
    return start(
        env,
        "beat",
        "--pidfile",
        "",
        "--max-interval",
        "1",
        "--loglevel",
        "INFO",
        log=log,
    )


@pytest.mark.slow
def test_a_standby_beat_takes_over_when_the_leader_is_killed_and_sends_nothing_twice(
    process_env: dict[str, str], worker: None, tmp_path: Path
) -> None:
    intervals: dict[str, float] = json.loads(manage_shell(process_env, ARRANGE))
    beats = {
        name: start_beat(process_env, tmp_path / f"{name}.log") for name in ("a", "b")
    }
    logs = {name: tmp_path / f"{name}.log" for name in beats}
    try:
        # 1. One of the two leads; the other names it.
        wait_for(
            "a beat leads",
            lambda: any("beat: leading" in log.read_text() for log in logs.values()),
            START_WAIT_SECONDS,
            tmp_path,
        )
        leader = next(
            n for n, log in logs.items() if "beat: leading" in log.read_text()
        )
        standby = "b" if leader == "a" else "a"
        leader_id = f"{socket.gethostname()}:{beats[leader].pid}:"  # then a nonce
        wait_for(
            "the standby names the leader",
            lambda: (
                f"beat: standing by (leader is {leader_id}" in logs[standby].read_text()
            ),
            START_WAIT_SECONDS,
            tmp_path,
        )
        assert (read_state(process_env)["leader"] or "").startswith(leader_id)
        wait_for(
            "the leader's health sweep runs",
            lambda: read_state(process_env)["sweep"] is not None,
            START_WAIT_SECONDS,
            tmp_path,
        )

        # 2. The leader dies without a chance to hand over.
        beats[leader].send_signal(signal.SIGKILL)
        beats[leader].wait()
        wait_for(
            "the standby leads",
            lambda: "beat: leading" in logs[standby].read_text(),
            TAKEOVER_SECONDS,
            tmp_path,
        )
        standby_id = f"{socket.gethostname()}:{beats[standby].pid}:"
        assert (read_state(process_env)["leader"] or "").startswith(standby_id)

        # 3. The sweep goes on, sent by the new leader and run by the worker.
        swept_before = read_state(process_env)["sweep"]
        assert swept_before is not None
        wait_for(
            "a health sweep after the takeover",
            lambda: (read_state(process_env)["sweep"] or "") > swept_before,
            TAKEOVER_SECONDS,
            tmp_path,
        )
        assert beats[standby].poll() is None, logs[standby].read_text()
    finally:
        for process in beats.values():
            if process.poll() is None:
                stop(process, tmp_path)

    # 4. Stopped by SIGTERM, the new leader handed its lease over; the standby sent
    # nothing until it led; the sweep came from both in turn.
    assert "beat: released leadership" in logs[standby].read_text()
    (led_at,) = [at for at, line in log_lines(logs[standby]) if "beat: leading" in line]
    standby_sends = sends(logs[standby])
    assert all(at >= led_at for at, _ in standby_sends)
    sweep = next(n for n in intervals if "sweep" in n.lower())
    assert sweep in {name for _, name in sends(logs[leader])}
    assert sweep in {name for _, name in standby_sends}

    # 5. Across both beats, each task was sent at most once in each of its periods.
    by_task: dict[str, list[datetime]] = defaultdict(list)
    for at, name in sends(logs[leader]) + standby_sends:
        by_task[name].append(at)
    assert set(by_task) == set(intervals), logs[standby].read_text()
    for name, times in by_task.items():
        times.sort()
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        # Sent when due: one interval after the previous send. The log line comes
        # after last_run_at is written, which may wait for the database's write
        # lock, so a gap may look shorter by that wait; a repeat within one period
        # (what a stale schedule sends at a takeover) is far shorter.
        slack = min(1.0, intervals[name] / 2)
        assert all(gap >= intervals[name] - slack for gap in gaps), (name, times)
