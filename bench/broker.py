"""The embedded broker under stress: many writers, several readers, a busy CPU.

    python -m bench.broker
    python -m bench.broker --transport kombu   # kombu's own filesystem transport
    python -m bench.broker --kill-every 1 --work 0.005   # consumers SIGKILLed

Producers pause ``--pause`` seconds between messages, so the queue stays short
as in production and readers meet messages just written (``--pause 0`` instead
builds a backlog).

Starts ``--contention`` processes that only spin the CPU, ``--consumers`` consumer
processes and ``--producers`` producer processes on one broker folder (a fresh
temporary one), all through kombu with the real transport class and kombu's message
encoding, as Celery uses them:

1. the producers publish ``--messages`` messages between them, each carrying its
   number and a body about the size of a Celery task message;
2. each consumer takes one message at a time (prefetch 1), works on it for
   ``--work`` seconds (a task's run time), appends its number to its own record
   file and only then acknowledges it (acks-late);
3. with ``--kill-every``, a consumer chosen at random is SIGKILLed that often and
   a new one started on its record file, as systemd restarts a killed worker;
4. once every number is recorded, or nothing new was recorded for
   ``--idle-timeout`` seconds, the consumers are told to stop.

A consumer that raises leaves its process, as a Celery worker's consumer does, and
is not restarted. ``lost`` counts numbers nobody recorded, ``duplicated`` numbers
recorded more than once (acks-late allows one per kill: a message recorded and
not yet acknowledged when its consumer died is delivered again),
``consumer_exits`` consumers that ended on their own before they were told to;
``unreadable`` the messages readers set aside; ``seconds`` runs from the
first publish to the last record (or to giving up).
"""

from __future__ import annotations

import argparse
import collections
import math
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from kombu import Connection, Consumer, Exchange, Message, Producer, Queue

from bench import emit
from controlplane import broker

TRANSPORTS = {
    "safefs": "controlplane.broker:Transport",
    "kombu": "kombu.transport.filesystem:Transport",
}
EXCHANGE = Exchange("bench", type="direct", durable=False)
QUEUE = Queue("bench", EXCHANGE, routing_key="bench", durable=False)
# A Celery task message's body is a few hundred bytes of JSON.
PADDING = "x" * 600


def connect(transport: str, folder: Path) -> Connection:
    return Connection(
        transport=TRANSPORTS[transport],
        transport_options=broker.embedded_options(folder),
    )


def spin(stop: Event) -> None:
    while not stop.is_set():
        for _ in range(100_000):
            pass


def produce(transport: str, folder: Path, numbers: range, pause: float) -> None:
    with connect(transport, folder) as connection:
        producer = Producer(connection.channel(), exchange=EXCHANGE)
        for number in numbers:
            producer.publish(
                {"id": number, "args": PADDING},
                routing_key="bench",
                serializer="json",
                declare=[QUEUE],
            )
            time.sleep(pause)


def consume(
    transport: str, folder: Path, record: Path, stop: Path, work: float
) -> None:
    # One write() of a whole line on an append-only descriptor: a consumer killed
    # at any moment leaves whole lines only.
    out = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with connect(transport, folder) as connection:

        def on_message(body: dict[str, Any], message: Message) -> None:
            time.sleep(work)
            os.write(out, f"{body['id']}\n".encode())
            message.ack()

        channel = connection.channel()
        consumer = Consumer(channel, [QUEUE], callbacks=[on_message], accept=["json"])
        with consumer:
            consumer.qos(prefetch_count=1)
            while not stop.exists():
                try:
                    connection.drain_events(timeout=1)
                except TimeoutError:
                    pass


def recorded(records: list[Path]) -> collections.Counter[int]:
    counts: collections.Counter[int] = collections.Counter()
    for record in records:
        if record.exists():
            counts.update(int(line) for line in record.read_text().split())
    return counts


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    (folder / "out").mkdir()
    (folder / "processed").mkdir()
    # Bound once before any process starts, as the control plane's settings used to
    # for kombu's transport: its table creation races too, and would end the run
    # before a message's own race could show.
    with connect(args.transport, folder) as connection:
        QUEUE(connection.channel()).declare()
    ctx = multiprocessing.get_context("fork")
    stop_busy = ctx.Event()
    # A file, not an Event: a consumer SIGKILLed inside Event.is_set() would hold
    # its lock forever and hang everyone else.
    stop_consumers = folder / "stop"
    busy = [ctx.Process(target=spin, args=(stop_busy,)) for _ in range(args.contention)]
    records = [folder / f"consumer-{i}.txt" for i in range(args.consumers)]

    def consumer(record: Path) -> multiprocessing.process.BaseProcess:
        return ctx.Process(
            target=consume,
            args=(args.transport, folder, record, stop_consumers, args.work),
        )

    consumers = [consumer(record) for record in records]
    producers = [
        ctx.Process(
            target=produce,
            args=(
                args.transport,
                folder,
                range(i, args.messages, args.producers),
                args.pause,
            ),
        )
        for i in range(args.producers)
    ]
    for process in busy + consumers:
        process.start()
    started = time.monotonic()
    for process in producers:
        process.start()

    last_count, last_change = 0, time.monotonic()
    finished = started
    chooser = random.Random(args.seed)
    kills = 0
    next_kill = started + args.kill_every if args.kill_every else math.inf
    while True:
        time.sleep(0.2)
        if time.monotonic() >= next_kill:
            next_kill += args.kill_every
            alive = [i for i, p in enumerate(consumers) if p.is_alive()]
            if alive:
                victim = chooser.choice(alive)
                consumers[victim].kill()
                consumers[victim].join()
                consumers[victim] = consumer(records[victim])
                consumers[victim].start()
                kills += 1
        count = len(recorded(records))
        if count != last_count:
            last_count, last_change = count, time.monotonic()
            finished = last_change
        if count >= args.messages:
            break
        if time.monotonic() - last_change > args.idle_timeout:
            break

    # Whoever is gone before being told to stop exited on its own.
    exits = [p for p in consumers if not p.is_alive()]
    stop_consumers.touch()
    for process in producers + consumers:
        process.join(30)
    stop_busy.set()
    for process in busy:
        process.join(30)

    counts = recorded(records)
    wanted = set(range(args.messages))
    unreadable = broker.unreadable_messages(broker.embedded_options(folder))
    left_in_queue = len(list((folder / "out").iterdir()))
    shutil.rmtree(folder)
    return {
        "transport": args.transport,
        "messages": args.messages,
        "producers": args.producers,
        "consumers": args.consumers,
        "contention": args.contention,
        "pause": args.pause,
        "work": args.work,
        "lost": len(wanted - counts.keys()),
        "duplicated": sum(n - 1 for n in counts.values()),
        "consumer_exits": len(exits),
        "kills": kills,
        "producer_failures": sum(1 for p in producers if p.exitcode != 0),
        "unreadable": unreadable,
        "left_in_queue": left_in_queue,
        "seconds": round(finished - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--contention", type=int, default=2, help="busy processes")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.001,
        help="seconds each producer waits between messages",
    )
    parser.add_argument(
        "--kill-every",
        type=float,
        default=0.0,
        help="SIGKILL a consumer this often (seconds; 0: never)",
    )
    parser.add_argument(
        "--work", type=float, default=0.0, help="seconds a consumer spends per message"
    )
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--transport", choices=sorted(TRANSPORTS), default="safefs")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        help="give up after this many seconds without a new record",
    )
    args = parser.parse_args()
    if args.producers < 1 or args.consumers < 1 or args.messages < 1:
        sys.exit("bench.broker: --messages, --producers and --consumers must be >= 1")
    emit(run(args))


if __name__ == "__main__":
    main()
