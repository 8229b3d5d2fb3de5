"""The set-based health sweep: observations, hysteresis, reasons, query counts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.models import TaskStatus
from runners import health
from runners.eligibility import judge
from runners.models import (
    Flag,
    HealthSample,
    Reason,
    Runner,
    RunnerEvent,
    State,
    evaluate_flags,
)
from runners.tasks import sweep_health
from tests.factories import make_runner

pytestmark = pytest.mark.django_db

STEP = timedelta(seconds=5)


def heartbeat_at(when: datetime) -> dict[str, Any]:
    return {
        "last_heartbeat_at": when,
        "heartbeat_deadline": when + timedelta(seconds=settings.HEARTBEAT_STALE_AFTER),
    }


def sweeps(start: datetime, count: int) -> datetime:
    """Run ``count`` sweeps STEP apart starting at ``start``; return the last time."""
    now = start
    for i in range(count):
        now = start + i * STEP
        health.sweep(now)
    return now


def test_dead_host_turns_unhealthy_within_30_seconds_of_last_heartbeat() -> None:
    last = timezone.now()
    runner = make_runner(state=State.HEALTHY, reason="", **heartbeat_at(last))
    unhealthy_at = None
    for i in range(1, 13):
        now = last + i * STEP
        health.sweep(now)
        runner.refresh_from_db()
        if runner.state == State.UNHEALTHY:
            unhealthy_at = now
            break
        assert runner.state == State.HEALTHY
    assert unhealthy_at is not None
    assert unhealthy_at - last <= timedelta(seconds=30)
    # One missed sweep's worth of staleness is not enough on its own.
    assert unhealthy_at - last > timedelta(seconds=settings.HEARTBEAT_STALE_AFTER)
    assert runner.reason == Reason.HEARTBEAT_STALE
    event = RunnerEvent.objects.get(runner=runner)
    assert (event.from_state, event.to_state) == (State.HEALTHY, State.UNHEALTHY)
    assert event.reasons == ["heartbeat_stale"]
    assert event.runbook_slug == "runner-heartbeat-stale"
    assert runner.state_since == unhealthy_at


def test_recovery_needs_rise_after_good_observations() -> None:
    now = timezone.now()
    runner = make_runner(state=State.UNHEALTHY, reason=Reason.HEARTBEAT_STALE)
    for i in range(3):
        at = now + i * STEP
        Runner.objects.filter(pk=runner.pk).update(**heartbeat_at(at))
        health.sweep(at)
        runner.refresh_from_db()
        if i < 2:
            assert runner.state == State.UNHEALTHY
            assert runner.good_streak == i + 1
    assert runner.state == State.HEALTHY
    assert runner.reason == ""
    assert (runner.good_streak, runner.bad_streak) == (0, 0)
    event = RunnerEvent.objects.get(runner=runner)
    assert event.to_state == State.HEALTHY
    assert event.reasons == []


def test_flapping_heartbeat_does_not_flap_the_state() -> None:
    start = timezone.now()
    runner = make_runner(state=State.HEALTHY, reason="")
    for i in range(12):
        at = start + i * STEP
        # Fresh on even sweeps, stale on odd ones.
        deadline = at + STEP if i % 2 == 0 else at - STEP
        Runner.objects.filter(pk=runner.pk).update(
            last_heartbeat_at=deadline - timedelta(seconds=18),
            heartbeat_deadline=deadline,
        )
        health.sweep(at)
    runner.refresh_from_db()
    assert runner.state == State.HEALTHY
    assert not RunnerEvent.objects.exists()
    # Every change of the signal is still on the timeline.
    assert HealthSample.objects.filter(runner=runner, source="heartbeat").count() == 12


def test_one_bad_observation_then_a_good_one_resets_the_count() -> None:
    start = timezone.now()
    runner = make_runner(state=State.HEALTHY, reason="", **heartbeat_at(start))
    health.sweep(start + timedelta(seconds=21))
    runner.refresh_from_db()
    assert runner.bad_streak == 1
    Runner.objects.filter(pk=runner.pk).update(**heartbeat_at(start + STEP * 5))
    health.sweep(start + STEP * 5)
    runner.refresh_from_db()
    assert (runner.state, runner.bad_streak, runner.good_streak) == (
        State.HEALTHY,
        0,
        0,
    )


def _signals(now: datetime, case: str) -> dict[str, Any]:
    fresh = heartbeat_at(now - timedelta(seconds=2))
    github = {"github_seen_at": now - timedelta(seconds=30)}
    exporter = {"exporter_checked_at": now - timedelta(seconds=10)}
    return {
        "heartbeat_stale": heartbeat_at(now - timedelta(seconds=60)),
        "heartbeat_stale_github_online": {
            **heartbeat_at(now - timedelta(seconds=60)),
            **github,
            "github_status": "online",
        },
        "github_offline": {**github, "github_status": "offline"},
        "github_offline_heartbeat_ok": {
            **fresh,
            **github,
            "github_status": "offline",
        },
        "exporter_unreachable": {**fresh, **exporter, "exporter_ok": False},
        "disk_low_heartbeat": {**fresh, "facts_problems": int(Flag.DISK_LOW)},
        "disk_low_exporter": {
            **exporter,
            "exporter_ok": True,
            "exporter_problems": int(Flag.DISK_LOW),
        },
        "load_high": {**fresh, "facts_problems": int(Flag.LOAD_HIGH)},
        "removed": {**fresh, "removed_at": now - timedelta(minutes=1)},
        "github_only": {**github, "github_status": "online"},
        "github_stale": {
            "github_status": "online",
            "github_seen_at": now - timedelta(hours=2),
        },
        "exporter_stale": {
            "exporter_ok": True,
            "exporter_checked_at": now - timedelta(hours=2),
        },
        "never_seen": {},
        "all_good": {
            **fresh,
            **github,
            **exporter,
            "github_status": "online",
            "exporter_ok": True,
        },
        "exporter_only_ok": {**exporter, "exporter_ok": True},
    }[case]


@pytest.mark.parametrize(
    ("case", "state", "reasons"),
    [
        ("heartbeat_stale", State.UNHEALTHY, ["heartbeat_stale"]),
        (
            "heartbeat_stale_github_online",
            State.UNHEALTHY,
            ["heartbeat_stale", "signals_disagree"],
        ),
        ("github_offline", State.UNHEALTHY, ["github_offline"]),
        ("github_offline_heartbeat_ok", State.DEGRADED, ["signals_disagree"]),
        ("exporter_unreachable", State.DEGRADED, ["exporter_unreachable"]),
        ("disk_low_heartbeat", State.DEGRADED, ["disk_low"]),
        ("disk_low_exporter", State.DEGRADED, ["disk_low"]),
        ("load_high", State.DEGRADED, ["load_high"]),
        ("removed", State.UNHEALTHY, ["removed_from_github"]),
        ("github_only", State.UNKNOWN, ["github_only"]),
        ("github_stale", State.UNKNOWN, ["no_signal"]),
        ("exporter_stale", State.UNKNOWN, ["no_signal"]),
        ("never_seen", State.UNKNOWN, ["never_seen"]),
    ],
)
def test_each_reason_code_takes_a_healthy_runner_down(
    case: str, state: State, reasons: list[str]
) -> None:
    now = timezone.now()
    runner = make_runner(state=State.HEALTHY, reason="", **_signals(now, case))
    health.sweep(now)
    runner.refresh_from_db()
    assert runner.state == State.HEALTHY  # one observation is not enough
    health.sweep(now + timedelta(seconds=1))
    runner.refresh_from_db()
    assert (runner.state, runner.reason) == (state, reasons[0])
    assert runner.reasons == reasons
    event = RunnerEvent.objects.get(runner=runner)
    assert event.reasons == reasons
    assert event.runbook_slug


@pytest.mark.parametrize("case", ["all_good", "exporter_only_ok"])
def test_a_fresh_host_signal_brings_an_unknown_runner_up(case: str) -> None:
    now = timezone.now()
    runner = make_runner(**_signals(now, case))
    for i in range(3):
        health.sweep(now + timedelta(seconds=i))
    runner.refresh_from_db()
    assert (runner.state, runner.reason) == (State.HEALTHY, "")


def test_a_stale_github_online_reading_never_makes_a_runner_healthy() -> None:
    now = timezone.now()
    runner = make_runner(**_signals(now, "github_stale"))
    for i in range(10):
        health.sweep(now + i * STEP)
    runner.refresh_from_db()
    assert runner.state == State.UNKNOWN
    assert judge(runner, timezone.now()).blocking


def test_reason_follows_in_place_while_the_state_holds() -> None:
    now = timezone.now()
    runner = make_runner(
        state=State.DEGRADED,
        reason=Reason.DISK_LOW,
        facts_problems=int(Flag.LOAD_HIGH),
        **heartbeat_at(now),
    )
    health.sweep(now)
    runner.refresh_from_db()
    assert (runner.state, runner.reason) == (State.DEGRADED, Reason.LOAD_HIGH)
    assert not RunnerEvent.objects.exists()


def test_sql_evaluation_matches_the_rule_table() -> None:
    now = timezone.now()
    cases = [
        "heartbeat_stale_github_online",
        "github_offline_heartbeat_ok",
        "disk_low_exporter",
        "removed",
        "all_good",
        "github_only",
    ]
    for case in cases:
        make_runner(name=case, state=State.UNKNOWN, **_signals(now, case))
    for i in range(3):
        health.sweep(now + timedelta(seconds=i))
    for runner in Runner.objects.all():
        expected_state, reasons = evaluate_flags(runner.observed_flags)
        assert runner.state == expected_state, runner.name
        assert runner.reason == (reasons[0] if reasons else "")


def _fleet(size: int, now: datetime) -> None:
    """Half the fleet heartbeating, a quarter silent, a quarter never seen."""
    runners = []
    for i in range(size):
        kw: dict[str, Any] = {"name": f"r{i:05d}", "state": State.HEALTHY, "reason": ""}
        if i % 4 < 2:
            kw.update(heartbeat_at(now + timedelta(seconds=60)))
        elif i % 4 == 2:
            kw.update(heartbeat_at(now - timedelta(seconds=60)))
        runners.append(Runner(**kw))
    Runner.objects.bulk_create(runners)


def _query_counts(size: int) -> list[int]:
    now = timezone.now()
    _fleet(size, now)
    counts = []
    for i in range(4):
        with CaptureQueriesContext(connection) as ctx:
            health.sweep(now + i * STEP)
        counts.append(len(ctx.captured_queries))
    Runner.objects.all().delete()
    return counts


def test_sweep_query_count_does_not_grow_with_the_fleet() -> None:
    small = _query_counts(100)
    large = _query_counts(2_000)
    assert small == large
    # Every sweep: two INSERT ... SELECTs of changed signals (samples), the flags
    # UPDATE, the streak UPDATE, and the SELECT of observations due to transition;
    # when some are due (the second sweep: the silent and the never-seen quarters),
    # one INSERT ... SELECT of their events and one UPDATE of their state.
    lock = 1 if connection.vendor == "postgresql" else 0
    savepoint = 2  # the test's transaction turns atomic() into a savepoint
    base = lock + savepoint
    assert small == [base + 5, base + 7, base + 5, base + 5]
    assert Runner.objects.count() == 0


def test_steady_state_sweep_writes_nothing(
    django_assert_num_queries: Any,
) -> None:
    now = timezone.now()
    _fleet(300, now)
    health.sweep(now)
    health.sweep(now + STEP)
    lock = 1 if connection.vendor == "postgresql" else 0
    with django_assert_num_queries(2 + lock + 5):
        result = health.sweep(now + 2 * STEP)
    assert result.transitions == 0
    assert result.observed_changes == 0
    assert Runner.objects.filter(state=State.UNHEALTHY).count() == 75
    assert Runner.objects.filter(state=State.HEALTHY).count() == 150
    assert Runner.objects.filter(state=State.UNKNOWN).count() == 75


def test_removed_runner_is_not_eligible_even_with_a_fresh_heartbeat() -> None:
    now = timezone.now()
    runner = make_runner(**_signals(now, "removed"))
    sweeps(now, 3)
    runner.refresh_from_db()
    assert runner.state == State.UNHEALTHY
    assert runner not in Runner.objects.eligible_for_deploy()
    assert "removed from GitHub" in judge(runner, timezone.now()).blocking


def test_sweep_task_records_its_status_and_is_scheduled_on_the_health_queue() -> None:
    from django_celery_beat.models import PeriodicTask

    runner = make_runner(state=State.HEALTHY, reason="")
    sweep_health()
    sweep_health()
    runner.refresh_from_db()
    assert runner.state == State.UNKNOWN
    assert TaskStatus.objects.get(name="health_sweep").last_success_at
    schedules = {
        task.task: task
        for task in PeriodicTask.objects.filter(task__startswith="runners.")
    }
    sweep = schedules["runners.tasks.sweep_health"]
    assert sweep.queue == "health"
    assert (sweep.interval.every, sweep.interval.period) == (5, "seconds")
    assert schedules["runners.tasks.prune_health_history"].queue == "health"


@pytest.mark.parametrize("phase", [0.0, 1.5, 3.0, 4.5])
def test_one_missed_heartbeat_never_takes_a_runner_down(phase: float) -> None:
    start = timezone.now()
    runner = make_runner(state=State.HEALTHY, reason="", **heartbeat_at(start))
    # Heartbeats every 10 s, except the one at +10 s, which is lost.
    beats = [start + timedelta(seconds=s) for s in (20, 30, 40)]
    for i in range(1, 10):
        at = start + timedelta(seconds=phase + 5 * i)
        arrived = [b for b in beats if b <= at]
        if arrived:
            Runner.objects.filter(pk=runner.pk).update(**heartbeat_at(arrived[-1]))
        health.sweep(at)
    runner.refresh_from_db()
    assert runner.state == State.HEALTHY
    assert not RunnerEvent.objects.exists()
