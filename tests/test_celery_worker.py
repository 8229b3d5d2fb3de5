"""Celery liveness: a real worker and beat run the tick; tracked() records job runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django_celery_beat.models import PeriodicTask

from controlplane.models import TaskStatus
from controlplane.tasks import BEAT_TASK_STATUS, beat_tick, tracked
from tests.conftest import SUITE_BROKER_URL, manage_shell
from tests.processes import start, stop

# Beat's first tick comes one interval (15 s) after it starts, plus start-up time.
TICK_WAIT_SECONDS = 90

READ_BEAT_STATUS = """
import json
import os
from controlplane.models import TaskStatus
status = TaskStatus.objects.filter(name="beat").first()
print(json.dumps(status and status.last_success_at.isoformat()))
"""


@pytest.mark.slow
def test_beat_and_worker_record_the_beat_tick(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    assert json.loads(manage_shell(process_env, READ_BEAT_STATUS)) is None
    worker = start(
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
    # --max-interval 1: beat re-reads the schedule table every second.
    beat = start(
        process_env,
        "beat",
        "--pidfile",
        "",
        "--schedule",
        str(tmp_path / "beat-schedule"),
        "--max-interval",
        "1",
        "--loglevel",
        "INFO",
        log=tmp_path / "beat.log",
    )
    try:
        deadline = time.monotonic() + TICK_WAIT_SECONDS
        ticked = None
        while ticked is None and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert beat.poll() is None, (tmp_path / "beat.log").read_text()
            time.sleep(1)
            ticked = json.loads(manage_shell(process_env, READ_BEAT_STATUS))
    finally:
        beat_exit = stop(beat, tmp_path)
        worker_exit = stop(worker, tmp_path)
    logs = "\n".join(
        f"--- {name}\n{(tmp_path / name).read_text()}"
        for name in ("beat.log", "worker.log")
    )
    assert ticked is not None, logs
    assert "controlplane.tasks.beat_tick" in (tmp_path / "worker.log").read_text()
    assert (beat_exit, worker_exit) == (0, 0), logs


@pytest.mark.django_db
def test_the_beat_tick_is_scheduled_in_the_database_every_15_seconds() -> None:
    task = PeriodicTask.objects.get(task="controlplane.tasks.beat_tick")
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (15, "seconds")
    assert task.queue == "health"
    assert task.expire_seconds == 60


@pytest.mark.django_db
def test_beat_tick_records_a_success() -> None:
    beat_tick()
    status = TaskStatus.objects.get(name=BEAT_TASK_STATUS)
    assert status.last_success_at is not None
    assert status.last_failure_at is None


@pytest.mark.django_db
def test_tracked_records_success_and_duration_as_a_decorator() -> None:
    @tracked("runner-sync")
    def sync() -> str:
        return "synced"

    assert sync() == "synced"
    status = TaskStatus.objects.get(name="runner-sync")
    assert status.last_success_at is not None
    assert status.last_failure_at is None
    assert status.last_duration_seconds >= 0


@pytest.mark.django_db
def test_tracked_records_a_failure_and_raises_it_again() -> None:
    with pytest.raises(TimeoutError), tracked("exporter-probe"):
        raise TimeoutError("exporter did not answer")
    status = TaskStatus.objects.get(name="exporter-probe")
    assert status.last_failure_at is not None
    assert status.last_success_at is None
    assert status.last_error == "TimeoutError: exporter did not answer"


@pytest.mark.django_db
def test_tracked_keeps_the_last_success_when_a_later_run_fails() -> None:
    with tracked("secrets-check"):
        pass
    with pytest.raises(ValueError), tracked("secrets-check"):
        raise ValueError("bad page")
    status = TaskStatus.objects.get(name="secrets-check")
    assert status.last_success_at is not None
    assert status.last_failure_at is not None
    assert status.last_failure_at >= status.last_success_at


@pytest.mark.skipif(
    not (SUITE_BROKER_URL or "").startswith("redis"), reason="the suite runs on Redis"
)
def test_a_broker_key_prefix_keeps_queues_apart_on_a_shared_redis(
    process_env: dict[str, str],
) -> None:
    import redis

    prefix = process_env["CELERY_BROKER_KEY_PREFIX"]
    client = redis.Redis.from_url(str(SUITE_BROKER_URL))
    client.delete(f"{prefix}health")
    before = client.llen("health")

    manage_shell(
        process_env,
        "from controlplane.tasks import beat_tick; beat_tick.delay()",
    )

    assert client.llen(f"{prefix}health") == 1
    assert client.llen("health") == before
    client.delete(f"{prefix}health")
