"""Runners holding a deploy heartbeat faster and are checked closer: the simulator's
agents POST real heartbeats to a live control plane and follow its answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import close_old_connections

from deploys.models import DeployAttempt, DeployRun
from githubsim import Simulator
from runners import deploying, health
from runners.models import Reason, Runner, State
from tests.factories import make_env, runner_with_token

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

# Five simulated seconds a real second: the simulated fleet beats every 10 simulated
# seconds, which the control plane here expects as every 2 real seconds; a runner
# holding a deploy is asked for one every real second. The agents follow the answer
# in the control plane's (real) seconds.
TIME_SCALE = 5


@pytest.fixture
def fleet(live_server: Any, settings: Any) -> Iterator[Simulator]:
    settings.HEARTBEAT_INTERVAL = 2
    settings.HEARTBEAT_DEPLOY_INTERVAL = 1
    with Simulator(
        time_scale=TIME_SCALE, heartbeat_url=f"{live_server.url}/heartbeat"
    ) as sim:
        yield sim


def enrol(sim: Simulator, name: str, *, follows: bool = True) -> Runner:
    """A runner known to both sides, its agent running with the issued token."""
    runner, token = runner_with_token(name)
    sim.add_runner(name, [])
    if not follows:
        answer = requests.post(
            f"{sim.url}/_sim/runners/{name}/agent",
            json={"follows_interval": False},
            timeout=5,
        )
        assert answer.status_code == 200
    sim.set_heartbeat_token(name, token)
    return runner


def sim_runner(sim: Simulator, name: str) -> dict[str, Any]:
    answer = requests.get(f"{sim.url}/_sim/runners/{name}", timeout=5)
    assert answer.status_code == 200
    return dict(answer.json())


def beats_every(sim: Simulator, name: str, seconds: int) -> Callable[[], bool]:
    """The simulated agent sends its heartbeats ``seconds`` control-plane seconds
    apart (the simulator shows its own, sped-up seconds)."""
    return lambda: sim_runner(sim, name)["heartbeat_interval"] == seconds * TIME_SCALE


def eventually(condition: Callable[[], bool], timeout: float = 20) -> bool:
    """Poll ``condition`` (fresh database reads each time) until it holds."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        close_old_connections()
        if condition():
            return True
        time.sleep(0.05)
    return False


def beaten_after(runner: Runner, moment: datetime | None) -> Callable[[], bool]:
    def check() -> bool:
        runner.refresh_from_db()
        last = runner.last_heartbeat_at
        return last is not None and (moment is None or last > moment)

    return check


def deadline_after(runner: Runner) -> float:
    runner.refresh_from_db()
    assert runner.heartbeat_deadline and runner.last_heartbeat_at
    return (runner.heartbeat_deadline - runner.last_heartbeat_at).total_seconds()


def hold_deploy(runner: Runner) -> DeployAttempt:
    env = make_env("production", runner)
    run = DeployRun.objects.create(
        environment=env, ref="main", state=DeployRun.State.RUNNING
    )
    return DeployAttempt.objects.create(
        run=run, number=1, runner=runner, state=DeployAttempt.State.RUNNING
    )


def healthy(runner: Runner) -> None:
    """Sweep until the runner is healthy, at the moment of its latest heartbeat."""
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is not None
    for _ in range(settings.HEALTH_RISE_AFTER):
        health.sweep(runner.last_heartbeat_at)
    runner.refresh_from_db()
    assert runner.state == State.HEALTHY


def test_a_deploying_runner_beats_faster_and_returns_to_normal_after_the_deploy(
    fleet: Simulator,
) -> None:
    runner = enrol(fleet, "deploy-1")
    assert eventually(beaten_after(runner, None))
    assert eventually(beats_every(fleet, "deploy-1", settings.HEARTBEAT_INTERVAL))
    assert deadline_after(runner) == settings.HEARTBEAT_STALE_AFTER

    attempt = hold_deploy(runner)
    assert deploying.mark_holders() == (1, 0)
    assert eventually(
        beats_every(fleet, "deploy-1", settings.HEARTBEAT_DEPLOY_INTERVAL)
    )
    runner.refresh_from_db()
    assert eventually(beaten_after(runner, runner.last_heartbeat_at))
    assert deadline_after(runner) == settings.HEARTBEAT_DEPLOY_STALE_AFTER

    attempt.state = DeployAttempt.State.SUCCEEDED
    attempt.save(update_fields=["state"])
    assert deploying.mark_holders() == (0, 1)
    assert eventually(beats_every(fleet, "deploy-1", settings.HEARTBEAT_INTERVAL))
    runner.refresh_from_db()
    assert eventually(beaten_after(runner, runner.last_heartbeat_at))
    assert deadline_after(runner) == settings.HEARTBEAT_STALE_AFTER


def test_a_deploying_runner_that_stops_beating_turns_unhealthy_within_the_short_deadline(
    fleet: Simulator,
) -> None:
    runner = enrol(fleet, "deploy-1")
    bystander = enrol(fleet, "idle-1")
    hold_deploy(runner)
    deploying.mark_holders()
    assert eventually(
        beats_every(fleet, "deploy-1", settings.HEARTBEAT_DEPLOY_INTERVAL)
    )
    runner.refresh_from_db()
    assert eventually(beaten_after(runner, runner.last_heartbeat_at))
    assert eventually(beaten_after(bystander, None))
    fleet.stop_heartbeats("deploy-1")
    fleet.stop_heartbeats("idle-1")
    fleet.wait_until(lambda: False, timeout=0.5)  # let in-flight beats land
    healthy(runner)
    healthy(bystander)
    last = runner.last_heartbeat_at
    assert last is not None
    short = timedelta(seconds=settings.HEARTBEAT_DEPLOY_STALE_AFTER)
    check = timedelta(seconds=settings.HEALTH_DEPLOY_CHECK_INTERVAL)

    # Fresh until the short deadline, then HEALTH_FALL_AFTER checks confirm it.
    assert deploying.check(last + short - check).transitions == 0
    moments = [last + short + check * n for n in range(settings.HEALTH_FALL_AFTER)]
    results = [deploying.check(moment) for moment in moments]
    runner.refresh_from_db()
    assert [r.transitions for r in results][-1] == 1
    assert (runner.state, runner.reason) == (State.UNHEALTHY, Reason.HEARTBEAT_STALE)
    assert runner.state_since == moments[-1]

    # The runner holding no deploy was not looked at, and its deadline is unchanged.
    bystander.refresh_from_db()
    assert bystander.state == State.HEALTHY
    assert deadline_after(bystander) == settings.HEARTBEAT_STALE_AFTER
    for moment in moments:
        health.sweep(moment)
    bystander.refresh_from_db()
    assert bystander.state == State.HEALTHY


def test_an_older_agent_keeps_its_interval_and_the_normal_deadline(
    fleet: Simulator,
) -> None:
    runner = enrol(fleet, "deploy-1", follows=False)
    hold_deploy(runner)
    deploying.mark_holders()
    assert eventually(beaten_after(runner, None))
    runner.refresh_from_db()
    assert eventually(beaten_after(runner, runner.last_heartbeat_at))
    runner.refresh_from_db()
    assert runner.holds_deploy
    assert deadline_after(runner) == settings.HEARTBEAT_STALE_AFTER
    view = sim_runner(fleet, "deploy-1")
    # It never heard an interval: it keeps the fleet's 10 simulated seconds.
    assert (view["heartbeat_follows_interval"], view["heartbeat_interval"]) == (
        False,
        10,
    )
    # It is checked with the deploying runners, against its normal deadline.
    healthy(runner)
    last = runner.last_heartbeat_at
    assert last is not None
    fleet.stop_heartbeats("deploy-1")
    for seconds in (7, 8, 9):
        deploying.check(last + timedelta(seconds=seconds))
    runner.refresh_from_db()
    assert runner.state == State.HEALTHY


def test_the_check_reads_only_the_runners_holding_a_deploy(
    django_assert_max_num_queries: Any,
) -> None:
    runners = [runner_with_token(f"r-{n}")[0] for n in range(20)]
    hold_deploy(runners[0])
    with django_assert_max_num_queries(4):
        assert deploying.mark_holders() == (1, 0)
    with django_assert_max_num_queries(3):
        assert deploying.mark_holders() == (0, 0)
    assert list(Runner.objects.filter(holds_deploy=True)) == [runners[0]]


def test_one_stale_observation_is_not_enough_and_a_late_heartbeat_resets_it(
    client: Any,
) -> None:
    runner, token = runner_with_token("deploy-1", holds_deploy=True)
    hold_deploy(runner)
    headers = {"Authorization": f"Bearer {token}", "X-Heartbeat-Follow-Interval": "1"}
    assert (
        client.post("/heartbeat", "{}", "application/json", headers=headers).status_code
        == 204
    )
    healthy(runner)
    last = runner.last_heartbeat_at
    assert last is not None
    late = last + timedelta(seconds=settings.HEARTBEAT_DEPLOY_STALE_AFTER + 1)

    # One check sees the deadline passed: counted, not concluded.
    deploying.check(late)
    runner.refresh_from_db()
    assert (runner.state, runner.bad_streak) == (State.HEALTHY, 1)

    # The late heartbeat lands before the next check: the streak is gone.
    assert (
        client.post("/heartbeat", "{}", "application/json", headers=headers).status_code
        == 204
    )
    runner.refresh_from_db()
    fresh = runner.last_heartbeat_at
    assert fresh is not None
    deploying.check(fresh + timedelta(seconds=1))
    runner.refresh_from_db()
    assert (runner.state, runner.bad_streak) == (State.HEALTHY, 0)
