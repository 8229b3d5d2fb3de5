"""One active deploy per environment under real concurrency, on PostgreSQL.

50 threads (each with its own database connection) request and advance deploys at
the same moment while a monitor samples the active runs; the partial unique
constraint must keep it at one at every sample. SQLite serialises all writers, so
it cannot show the race: these tests skip there and CI runs them on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections

from deploys import engine
from deploys.models import DeployRun, Environment
from deploys.request_errors import IdempotencyInProgress
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners.models import Runner, State
from tests.conftest import REQUESTED_TAGS

THREADS = 50

POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")

pytestmark = [
    # Decided at collection, before any database set-up for these tests.
    pytest.mark.skipif(
        not POSTGRES,
        reason="needs PostgreSQL (set DATABASE_URL): SQLite runs one writer at a "
        "time, so concurrent promotions cannot race there",
    ),
    # serialized_rollback: the flush after each test would drop the role groups.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def env(github: Simulator) -> Environment:
    # A request resolves its ref in GitHub: the tags the tests deploy exist there.
    for i in range(THREADS):
        if f"v{i}" not in REQUESTED_TAGS:
            github.create_tag(f"v{i}")
    # No eligible runner: promoted runs wait at the gate without calling GitHub.
    runner = Runner.objects.create(name="prod-1", state=State.UNHEALTHY)
    environment = Environment.objects.create(
        name="production", repository="acme/deploy", gate_timeout=3600
    )
    environment.set_pool([runner])
    return environment


class ActiveMonitor:
    """Samples the number of active runs per environment until stopped."""

    def __init__(self) -> None:
        self.samples = 0
        self.max_active = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        try:
            while not self._stop.is_set():
                counts = DeployRun.objects.active().values_list("environment_id")
                per_env: dict[int, int] = {}
                for (env_id,) in counts:
                    per_env[env_id] = per_env.get(env_id, 0) + 1
                self.max_active = max([self.max_active, *per_env.values()])
                self.samples += 1
        finally:
            connections.close_all()

    def __enter__(self) -> ActiveMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def all_at_once(work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` for i in range(THREADS), released together by a barrier."""
    barrier = threading.Barrier(THREADS)

    def task(i: int) -> Any:
        try:
            barrier.wait(timeout=30)
            return work(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(task, range(THREADS)))


@pytest.fixture
def monitor() -> Iterator[ActiveMonitor]:
    with ActiveMonitor() as m:
        yield m


def test_fifty_concurrent_requests_leave_exactly_one_active(
    env: Environment, sre: User, monitor: ActiveMonitor
) -> None:
    def request_and_advance(i: int) -> str:
        run = request_deploy(sre, env, f"v{i}", idempotency_key=f"key-{i}").run
        return engine.advance(run.pk)

    states = all_at_once(request_and_advance)

    assert DeployRun.objects.count() == THREADS
    assert DeployRun.objects.active().count() == 1
    assert DeployRun.objects.queued().count() == THREADS - 1
    assert states.count(DeployRun.State.GATING) <= 1
    assert monitor.samples > 0
    assert monitor.max_active == 1


def test_fifty_concurrent_advances_promote_only_the_oldest_queued_run(
    env: Environment, sre: User, monitor: ActiveMonitor
) -> None:
    runs = [request_deploy(sre, env, f"v{i}").run for i in range(THREADS)]

    for expected in runs[:3]:
        # Every queued run asks to start at the same moment.
        queued = list(DeployRun.objects.queued().values_list("pk", flat=True))

        def advance(i: int, ids: list[int] = queued) -> str:
            return engine.advance(ids[i % len(ids)])

        all_at_once(advance)

        active = list(DeployRun.objects.active())
        assert [run.pk for run in active] == [expected.pk]
        # It finishes; the next one may start.
        expected.cancel("sam-sre", "next")

    assert monitor.max_active == 1
    assert DeployRun.objects.queued().count() == THREADS - 3


def test_duplicate_requests_with_one_key_make_one_run(
    env: Environment, sre: User
) -> None:
    def request(i: int) -> int | str:
        try:
            return request_deploy(sre, env, "main", idempotency_key="same").run.pk
        except IdempotencyInProgress as exc:
            return exc.code

    answers = all_at_once(request)

    # Each duplicate either replays the run or, while the first is in flight, is
    # told to retry; a retry then replays it.
    run = DeployRun.objects.get()
    assert set(answers) <= {run.pk, "idempotency_key_in_progress"}
    assert run.pk in answers
    again = request_deploy(sre, env, "main", idempotency_key="same")
    assert (again.run.pk, again.created) == (run.pk, False)
