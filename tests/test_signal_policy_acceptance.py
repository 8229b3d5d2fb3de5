"""The seed's production, end to end through the simulator over HTTP: a primary whose
exporter Prometheus cannot reach and whose host has no heartbeat agent, a fully
monitored secondary. Real GitHub sync, exporter probes, heartbeats to a live server,
health sweeps and deploys dispatched through the gateway.

1. Default (strict) policy: deploys pass over the primary, saying why.
2. An SRE trusts the primary: deploys go to it, without the agent, for the
   override's duration only, and every page says so.
3. Exporter advisory alone: still passed over (only GitHub reports it).
4. Exporter advisory and the agent installed (the simulator's heartbeats turned on
   for the primary): deploys go to the primary again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import LazySettings
from django.contrib.auth.models import User
from django.utils import timezone

from deploys.models import DeployEvent, DeployRun
from deploys.triggers import request_deploy
from githubsim import Simulator
from runners import health, probe, sync, trust
from runners.models import Reason, Runner, State
from tests.conftest import logged_in
from tests.deploying import REPO, Clock, attempts, drive, final
from tests.factories import make_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PRIMARY = "prod-primary"
SECONDARY = "prod-secondary"
STALE_AFTER = 3


@pytest.fixture
def sim(live_server: Any, settings: LazySettings) -> Iterator[Simulator]:
    """GitHub for the gateway, and the hosts, heartbeating to this live server."""
    settings.HEARTBEAT_STALE_AFTER = STALE_AFTER
    with Simulator(
        heartbeat_url=f"{live_server.url}/heartbeat",
        heartbeat_interval=0.5,
        pickup_delay=0.2,
        job_duration=0.3,
        cancel_delay=0.2,
        seed=13,
    ) as simulator:
        settings.GITHUB_API_URL = simulator.url
        settings.GITHUB_TOKEN = "ghp_simulator_test_token"  # noqa: S105
        settings.GITHUB_REPOSITORY = REPO
        settings.GITHUB_APP_ID = ""
        yield simulator


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def heartbeat_fresh(name: str) -> bool:
    runner = Runner.objects.get(name=name)
    return runner.heartbeat_is_fresh(timezone.now())


def observe(settings: LazySettings) -> None:
    """One round of what beat does: sync from GitHub, probe exporters, and sweep
    often enough for any transition's hysteresis to complete."""
    sync.sync_fleet()
    probe.probe_fleet(timeout=1.0)
    for _ in range(settings.HEALTH_RISE_AFTER + settings.HEALTH_FALL_AFTER):
        health.sweep()


def deploy(sre: User, key: str) -> tuple[str, list[dict[str, Any]], DeployRun]:
    """Request a deploy and drive it to the end: the runner it ran on and the
    gate's decision list."""
    env = Runner.objects.get(name=PRIMARY).environments.get()
    run = drive(
        request_deploy(sre, env, "main", idempotency_key=key).run, final, Clock()
    )
    assert run.state == DeployRun.State.SUCCEEDED, run.reason
    [attempt] = attempts(run)
    gate = run.events.get(kind=DeployEvent.Kind.GATE_PASSED)
    return attempt.runner.name, gate.detail["considered"], run


def test_the_seed_production_deploys_by_policy_and_override(
    sim: Simulator, settings: LazySettings, sre: User, admin_user: User
) -> None:
    # The hosts: both online in GitHub; the secondary heartbeats and exports
    # metrics; the primary's exporter is behind a firewall (nothing listens at its
    # address) and its agent is not installed (no heartbeats).
    for name in (PRIMARY, SECONDARY):
        sim.add_runner(name, ["self-hosted", "production"])
    primary = Runner.objects.create(
        name=PRIMARY, exporter_url="http://127.0.0.1:9/metrics"
    )
    secondary = Runner.objects.create(
        name=SECONDARY, exporter_url=f"{sim.url}/_sim/exporter/{SECONDARY}/metrics"
    )
    sim.set_heartbeat_token(SECONDARY, secondary.issue_heartbeat_token("ada"))
    sim.set_heartbeat_token(PRIMARY, primary.issue_heartbeat_token("ada"))
    sim.state.set_heartbeats(PRIMARY, False)
    make_env(
        "production",
        primary,
        secondary,
        workflow_file="deploy.yml",
        default_ref="main",
        gate_timeout=30,
    )
    assert wait_for(lambda: heartbeat_fresh(SECONDARY)), "no heartbeat arrived"
    observe(settings)
    primary.refresh_from_db()
    secondary.refresh_from_db()
    assert (primary.state, primary.reason) == (
        State.DEGRADED,
        Reason.EXPORTER_UNREACHABLE,
    )
    assert secondary.state == State.HEALTHY

    # 1. Strict: the primary is passed over, with its reason.
    ran_on, considered, _ = deploy(sre, "strict")
    assert ran_on == SECONDARY
    assert considered[0]["passed_over"] == ["degraded (exporter unreachable)"]

    # 2. An override: deploys go to the primary, without the agent, while it lasts
    # (granted 50 s into a 1-minute override: ten seconds left).
    trust.grant(
        primary,
        sre,
        "exporter behind the firewall, INC-7",
        timedelta(minutes=1),
        timezone.now() - timedelta(seconds=50),
    )
    ran_on, considered, run = deploy(sre, "trusted")
    assert ran_on == PRIMARY
    badge = considered[0]["trusted"]
    assert badge.startswith(f"trusted by {sre.username} until ")
    assert considered[0]["notes"] == [
        f"degraded (exporter unreachable): overridden, {badge}"
    ]
    client = logged_in(sre)
    for url in (
        "/fleet/",
        f"/fleet/{PRIMARY}/",
        "/deploys/environments/production/",
        f"/deploys/{run.pk}/",
    ):
        assert badge in client.get(url).content.decode(), url
    # It ends by itself: no task, no SRE.
    primary.refresh_from_db()
    until = primary.trusted_until
    assert until is not None
    assert wait_for(lambda: timezone.now() > until, timeout=15)
    ran_on, considered, _ = deploy(sre, "expired")
    assert ran_on == SECONDARY
    assert "trusted" not in considered[0]
    assert badge not in client.get(f"/fleet/{PRIMARY}/").content.decode()

    # 3. The exporter made advisory for production; the agent still missing.
    response = logged_in(admin_user).patch(
        "/api/v1/environments/production/",
        {"exporter_policy": "advisory"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    ran_on, considered, _ = deploy(sre, "advisory")
    assert ran_on == SECONDARY
    assert considered[0]["passed_over"] == ["unknown (only GitHub reports it)"]
    assert considered[0]["notes"] == ["exporter unreachable: advisory for production"]

    # 4. The agent installed on the primary: heartbeats flow, deploys go back to it.
    sim.state.set_heartbeats(PRIMARY, True)
    assert wait_for(lambda: heartbeat_fresh(PRIMARY)), "the primary never heartbeated"
    observe(settings)
    primary.refresh_from_db()
    # Fleet-wide the primary is still degraded: its exporter is still unreachable.
    assert (primary.state, primary.reason) == (
        State.DEGRADED,
        Reason.EXPORTER_UNREACHABLE,
    )
    ran_on, considered, _ = deploy(sre, "agent")
    assert ran_on == PRIMARY
    assert considered[0]["notes"] == ["exporter unreachable: advisory for production"]
    page = client.get("/deploys/environments/production/").content.decode()
    assert "exporter unreachable: advisory for production" in page
    assert "heartbeat required, exporter advisory" in page
