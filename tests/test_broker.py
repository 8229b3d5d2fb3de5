"""The embedded broker (controlplane.broker): messages appear whole, and an unreadable
one is set aside, counted and logged while readers carry on."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import Client
from kombu import Connection, Exchange, Queue

from controlplane import broker
from controlplane.celery import app
from tests.conftest import ROOT, manage_shell
from tests.processes import CELERY, stop

QUEUE = Queue("work", Exchange("work", type="direct"), routing_key="work")
# Sorts before any name the transport writes: a reader meets these first.
EARLY = "00000000000000000000_planted"


def connect(folder: Path) -> Connection:
    for name in ("out", "processed"):
        (folder / name).mkdir(exist_ok=True)
    return Connection("safefs://", transport_options=broker.embedded_options(folder))


def publish(folder: Path, numbers: range, body_size: int = 100) -> None:
    with connect(folder) as connection:
        producer = connection.Producer()
        for number in numbers:
            producer.publish(
                {"n": number, "pad": "x" * body_size},
                exchange=QUEUE.exchange,
                routing_key="work",
                declare=[QUEUE],
            )


def receive(connection: Connection) -> int | None:
    """The number of the next message, acknowledged; None when there is none."""
    message = QUEUE(connection.default_channel).get(accept=["json"])
    if message is None:
        return None
    message.ack()
    number: int = message.decode()["n"]
    return number


def test_filesystem_urls_use_the_safe_transport() -> None:
    for url in ("safefs://", "filesystem://"):
        with Connection(url) as connection:
            assert type(connection.transport) is broker.Transport, url


@pytest.mark.django_db
def test_an_unreadable_message_is_set_aside_counted_and_logged_and_the_next_delivered(
    tmp_path: Path,
    client: Client,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish(tmp_path, range(1))
    out = tmp_path / "out"
    # A writer killed before writing, and one killed mid-write.
    (out / f"{EARLY}-empty.work.msg").write_bytes(b"")
    (out / f"{EARLY}-truncated.work.msg").write_bytes(b'{"body": "eyJuIjo')

    with connect(tmp_path) as connection, caplog.at_level(logging.WARNING):
        assert receive(connection) == 0
        assert receive(connection) is None

    aside = sorted(p.name for p in (tmp_path / "unreadable").iterdir())
    assert aside == [f"{EARLY}-empty.work.msg", f"{EARLY}-truncated.work.msg"]
    assert list(out.iterdir()) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == broker.__name__]
    assert len(warnings) == 2
    assert f"{EARLY}-empty.work.msg" in warnings[0]
    assert "JSONDecodeError" in warnings[0]

    options = broker.embedded_options(tmp_path)
    monkeypatch.setenv("CELERY_BROKER_URL", "safefs://")
    monkeypatch.setitem(app.conf, "broker_url", "safefs://")
    monkeypatch.setitem(app.conf, "broker_transport_options", options)
    assert (
        b"controlplane_broker_unreadable_messages 2.0" in client.get("/metrics").content
    )


def test_json_of_the_wrong_shape_is_unreadable_too(tmp_path: Path) -> None:
    publish(tmp_path, range(1))
    (tmp_path / "out" / f"{EARLY}.work.msg").write_text('["not", "a", "message"]')
    with connect(tmp_path) as connection:
        assert receive(connection) == 0
    assert broker.unreadable_messages(broker.embedded_options(tmp_path)) == 1


@pytest.mark.slow
def test_a_reader_racing_many_writers_never_meets_a_partial_message(
    tmp_path: Path,
) -> None:
    """Large messages make each write slow; kombu's own transport, which creates the
    file in the queue folder before it serializes and writes the message, hands
    this reader empty or half-written files (it raises JSONDecodeError)."""
    writers, each = 4, 20
    with connect(tmp_path) as connection:
        QUEUE(connection.default_channel).declare()
    ctx = multiprocessing.get_context("fork")
    processes = [
        ctx.Process(
            target=publish,
            args=(tmp_path, range(i * each, (i + 1) * each), 2_000_000),
        )
        for i in range(writers)
    ]
    for process in processes:
        process.start()
    received: list[int] = []
    deadline = time.monotonic() + 120
    with connect(tmp_path) as connection:
        while len(received) < writers * each and time.monotonic() < deadline:
            number = receive(connection)
            if number is not None:
                received.append(number)
    for process in processes:
        process.join(30)

    assert [p.exitcode for p in processes] == [0] * writers
    assert broker.unreadable_messages(broker.embedded_options(tmp_path)) == 0
    assert sorted(received) == list(range(writers * each))


def claimed_files(folder: Path) -> list[str]:
    return [p.name for p in (folder / "processed").rglob("*.msg")]


def test_an_acknowledged_message_leaves_no_file_behind(tmp_path: Path) -> None:
    publish(tmp_path, range(2))
    with connect(tmp_path) as connection:
        message = QUEUE(connection.default_channel).get(accept=["json"])
        assert message is not None
        assert len(claimed_files(tmp_path)) == 1
        message.ack()
        assert claimed_files(tmp_path) == []
        # Consumed without acknowledgements (as Celery's broadcasts are).
        with connection.Consumer(QUEUE, no_ack=True, callbacks=[lambda *_: None]):
            connection.drain_events(timeout=5)
    assert claimed_files(tmp_path) == []
    assert list((tmp_path / "out").iterdir()) == []


def test_messages_a_killed_consumer_claimed_are_delivered_again(
    tmp_path: Path,
) -> None:
    publish(tmp_path, range(2))
    ctx = multiprocessing.get_context("fork")
    claimed = ctx.Event()

    def take_one_and_hang() -> None:
        with connect(tmp_path) as connection:
            assert QUEUE(connection.default_channel).get(accept=["json"])
            claimed.set()
            time.sleep(60)

    consumer = ctx.Process(target=take_one_and_hang)
    consumer.start()
    assert claimed.wait(30)
    with connect(tmp_path) as connection:
        # Its claim is its own while it lives.
        assert receive(connection) == 1
        assert receive(connection) is None
    consumer.kill()
    consumer.join()

    with connect(tmp_path) as connection:
        assert receive(connection) == 0
        assert receive(connection) is None
    assert claimed_files(tmp_path) == []


def test_claims_from_before_a_reboot_are_returned_and_a_live_process_keeps_its_own(
    tmp_path: Path,
) -> None:
    publish(tmp_path, range(2))
    host, this_boot = socket.gethostname(), broker._boot_id()
    first, second = sorted((tmp_path / "out").iterdir())
    # Process 1 is alive now; the first claim is from an earlier boot's process 1.
    for boot, message in (("0" * 32, first), (this_boot, second)):
        claims = tmp_path / "processed" / f"claims-{host}-{boot}-1"
        claims.mkdir(parents=True)
        message.rename(claims / message.name)

    with connect(tmp_path) as connection:
        assert receive(connection) == 0
        assert receive(connection) is None
    assert claimed_files(tmp_path) == [second.name]


def test_writes_abandoned_in_the_staging_folder_are_discarded(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "abandoned.work.msg").write_bytes(b'{"bo')
    (staging / "in-progress.work.msg").write_bytes(b'{"bo')
    two_hours_ago = time.time() - 2 * 3600
    os.utime(staging / "abandoned.work.msg", (two_hours_ago, two_hours_ago))

    with connect(tmp_path) as connection:
        connection.channel()

    assert [p.name for p in staging.iterdir()] == ["in-progress.work.msg"]


def test_binding_to_a_new_exchange_creates_its_table_whole(tmp_path: Path) -> None:
    """kombu would create the table empty and fill it a moment later; a process
    reading it in between stopped with JSONDecodeError."""
    with connect(tmp_path) as connection:
        for name in ("a", "b"):
            Queue(name, Exchange("fresh", type="direct"), name)(
                connection.default_channel
            ).declare()

    table = json.loads((tmp_path / "control" / "fresh.exchange").read_text())
    assert sorted(queue for _, _, queue in table) == ["a", "b"]
    assert list((tmp_path / "staging").iterdir()) == []


@pytest.mark.slow
def test_a_celery_worker_keeps_running_past_an_unreadable_message(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**process_env}
    # The embedded broker in the test's own VAR_DIR, whatever the suite runs on.
    env.pop("CELERY_BROKER_URL", None)
    env.pop("CELERY_BROKER_KEY_PREFIX", None)
    queue_folder = Path(env["VAR_DIR"]) / "broker" / "out"
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [CELERY, "-A", "controlplane", "worker", "-Q", "health", "--pool", "solo"]
        + ["--without-mingle", "--without-gossip", "--loglevel", "INFO"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text() and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()
            time.sleep(0.5)
        (queue_folder / f"{EARLY}.health.msg").write_bytes(b"")
        manage_shell(env, "from controlplane.tasks import beat_tick; beat_tick.delay()")
        deadline = time.monotonic() + 60
        while "succeeded in" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        alive = worker.poll() is None
    finally:
        exit_code = stop(worker, tmp_path)
    text = log.read_text()
    assert alive, text
    assert "succeeded" in text and "controlplane.tasks.beat_tick" in text, text
    assert "set aside unreadable broker message" in text, text
    assert "Unrecoverable error" not in text, text
    assert exit_code == 0, text
    broker_folder = Path(env["VAR_DIR"]) / "broker"
    unreadable = broker_folder / "unreadable"
    assert [p.name for p in unreadable.iterdir()] == [f"{EARLY}.health.msg"]
    # Celery acknowledged (or restored) everything it claimed.
    assert claimed_files(broker_folder) == []


@pytest.mark.slow
def test_bench_broker_small_run_loses_nothing_and_no_consumer_exits() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.broker", "--messages", "500"]
        + ["--producers", "2", "--consumers", "2", "--contention", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result))
    assert result["messages"] == 500
    assert (result["lost"], result["duplicated"], result["consumer_exits"]) == (
        0,
        0,
        0,
    ), result
    assert result["unreadable"] == result["left_in_queue"] == 0, result


@pytest.mark.slow
def test_bench_broker_loses_nothing_when_consumers_are_killed_mid_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.broker", "--messages", "1000"]
        + ["--kill-every", "0.5", "--work", "0.005", "--idle-timeout", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result))
    assert result["kills"] >= 1, result
    assert (result["lost"], result["consumer_exits"]) == (0, 0), result
    # Acks-late: a message recorded but not yet acknowledged when its consumer was
    # killed is delivered again, at most once per kill.
    assert result["duplicated"] <= result["kills"], result
