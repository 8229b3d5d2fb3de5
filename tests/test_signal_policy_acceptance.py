"""The seed's production, end to end through the simulator over HTTP: a primary whose
exporter Prometheus cannot reach and whose host has no heartbeat agent, a fully
monitored secondary. Real GitHub sync, exporter probes, heartbeats to a live server,
health sweeps and deploys dispatched through the gateway, in one scenario.

1. Default (strict) policy: deploys pass over the primary, saying why, on every
   page that shows it.
2. An SRE trusts the primary: deploys go to it, without the agent, for the
   override's duration only, and every page that shows it says so.
3. Exporter advisory alone: still passed over (only GitHub reports it).
4. The agent installed through the workflow, as the runner page offers: the
   simulated job runs the shipped ``runner-agent.yml`` step, the real installer,
   on the primary's fake root; the agent it installed heartbeats from its crontab
   line; with the exporter advisory, deploys go to the primary again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import LazySettings
from django.contrib.auth.models import User
from django.utils import timezone

from deploys.models import DeployEvent, DeployRun
from deploys.triggers import request_deploy
from diagnostics import domain
from diagnostics.models import HostRun
from diagnostics.tasks import dispatch_host_run
from githubsim import Simulator
from runners import health, probe, sync, trust
from runners.models import Reason, Runner, State
from tests.conftest import logged_in
from tests.deploying import REPO, Clock, attempts, drive, final
from tests.factories import make_env
from tests.test_agent_install import host, simulate_agent_workflow  # noqa: F401

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(shutil.which("curl") is None, reason="the agent needs curl"),
]

PRIMARY = "prod-primary"
SECONDARY = "prod-secondary"
# Beyond the 10 s between the heartbeats of the installed agent's crontab line.
STALE_AFTER = 15
# Every page that shows a runner (the fleet, its own, its environment's).
RUNNER_PAGES = ("/fleet/", f"/fleet/{PRIMARY}/", "/deploys/environments/production/")


@pytest.fixture
def sim(live_server: Any, settings: LazySettings) -> Iterator[Simulator]:
    """GitHub for the gateway, and the hosts, heartbeating to this live server."""
    settings.HEARTBEAT_STALE_AFTER = STALE_AFTER
    # The installed agent reports this machine's own load (it is a real host here),
    # which other work may push past any limit: the scenario is about signals.
    settings.LOAD_PER_CPU_MAX = 1_000.0
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


def last_heartbeat(name: str) -> datetime:
    at = Runner.objects.get(name=name).last_heartbeat_at
    return at or datetime.min.replace(tzinfo=UTC)


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


def install_agent_through_the_workflow(client: Any) -> HostRun:
    """Press the runner page's "Install the heartbeat agent" and carry the run out:
    dispatch, the simulated job, the diagnostics watch seeing it end."""
    page = client.get(f"/fleet/{PRIMARY}/").content.decode()
    assert 'id="install-agent"' in page, "the page offers no agent install"
    response = client.post(f"/fleet/{PRIMARY}/diagnostics/install-agent/")
    assert response.status_code == 302, response.content
    run = HostRun.objects.get(kind=HostRun.Kind.AGENT_INSTALL)
    dispatch_host_run(run.pk)
    run.refresh_from_db()
    assert run.state == HostRun.State.RUNNING, run.detail
    return run


def crontab_line(table: Path) -> str:
    """The command of the line the installer added to the runner user's crontab."""
    [line] = [ln for ln in table.read_text().splitlines() if "runner-heartbeat" in ln]
    fields = line.split(" ", 5)
    assert fields[:5] == ["*"] * 5, line
    return fields[5]


@pytest.fixture
def cron(host: dict[str, Path]) -> Iterator[Callable[[], None]]:  # noqa: F811
    """Runs the installed crontab line once, as cron would at the next minute (a
    minute of heartbeats 10 s apart); stopped at the end of the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        started.append(
            subprocess.Popen(  # noqa: S603 (the line the installer wrote)
                [str(host["tools"] / "sh"), "-c", crontab_line(host["table"])],
                env={"PATH": str(host["tools"]), "HOME": "/home/runner"},
                start_new_session=True,
            )
        )

    yield start
    for process in started:
        # The line's shell and whatever it runs (sleep, curl): its own group.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_the_seed_production_deploys_by_policy_and_override(
    sim: Simulator,
    settings: LazySettings,
    sre: User,
    admin_user: User,
    live_server: Any,
    host: dict[str, Path],  # noqa: F811
    cron: Callable[[], None],
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
    primary_token = primary.issue_heartbeat_token("ada")
    sim.set_heartbeat_token(PRIMARY, primary_token)
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

    # 1. Strict: the primary is passed over, with its reason, and its page says
    # why, for the one environment whose pool holds it.
    ran_on, considered, _ = deploy(sre, "strict")
    assert ran_on == SECONDARY
    assert considered[0]["passed_over"] == ["degraded (exporter unreachable)"]
    client = logged_in(sre)
    runner_api = client.get(f"/api/v1/runners/{PRIMARY}/").json()
    assert runner_api["ineligibility_reasons"] == [
        "production: degraded (exporter unreachable)"
    ]
    page = client.get(f"/fleet/{PRIMARY}/").content.decode()
    assert "<strong>not eligible</strong>: degraded (exporter unreachable)" in page

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
    assert Runner.objects.get(name=PRIMARY).last_heartbeat_at is None  # no agent
    badge = considered[0]["trusted"]
    assert badge.startswith(f"trusted by {sre.username} until ")
    assert considered[0]["notes"] == [
        f"degraded (exporter unreachable): overridden, {badge}"
    ]
    for url in (*RUNNER_PAGES, f"/deploys/{run.pk}/"):
        assert badge in client.get(url).content.decode(), url
    runner_api = client.get(f"/api/v1/runners/{PRIMARY}/").json()
    assert runner_api["eligible"] is True
    assert runner_api["eligibility"][0]["trusted"] is True
    # It ends by itself: no task, no SRE.
    primary.refresh_from_db()
    until = primary.trusted_until
    assert until is not None
    assert wait_for(lambda: timezone.now() > until, timeout=15)
    ran_on, considered, _ = deploy(sre, "expired")
    assert ran_on == SECONDARY
    assert "trusted" not in considered[0]
    for url in RUNNER_PAGES:
        assert badge not in client.get(url).content.decode(), url
    assert client.get(f"/api/v1/runners/{PRIMARY}/").json()["eligible"] is False

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

    # 4. The agent installed through the workflow: the simulator runs the shipped
    # workflow's step, the real installer on the primary's fake root, with the
    # token from the runner's GitHub environment secret. The simulator itself
    # still sends no heartbeat for the primary: every one is the real agent's.
    simulate_agent_workflow(sim, host, live_server.url, PRIMARY)
    install = install_agent_through_the_workflow(client)
    assert install.github_run_id is not None
    github_run = sim.state.run_by_id(install.github_run_id)
    assert wait_for(lambda: github_run.status == "completed", timeout=60)
    note = sim.state.run_jobs(github_run)[0].note
    assert github_run.conclusion == "success", note
    assert "first heartbeat recorded" in note
    assert primary_token not in note
    domain.watch(install, timezone.now())
    install.refresh_from_db()
    assert install.state == HostRun.State.SUCCEEDED
    installed = Runner.objects.get(name=PRIMARY).last_heartbeat_at
    assert installed is not None
    # The agent keeps heartbeating from the crontab line the installer wrote.
    cron()
    assert wait_for(lambda: last_heartbeat(PRIMARY) > installed), "no cron heartbeat"
    observe(settings)
    primary.refresh_from_db()
    # Fleet-wide the primary is still degraded: its exporter is still unreachable.
    assert (primary.state, primary.reason) == (
        State.DEGRADED,
        Reason.EXPORTER_UNREACHABLE,
    )
    ran_on, considered, _ = deploy(sre, "agent")
    assert ran_on == PRIMARY, considered
    assert considered[0]["notes"] == ["exporter unreachable: advisory for production"]
    for url in ("/deploys/environments/production/", f"/fleet/{PRIMARY}/"):
        page = client.get(url).content.decode()
        assert "exporter unreachable: advisory for production" in page, url
        assert "heartbeat required, exporter advisory" in page, url
    runner_api = client.get(f"/api/v1/runners/{PRIMARY}/").json()
    assert runner_api["eligible"] is True
    assert runner_api["eligibility"][0]["notes"] == [
        "exporter unreachable: advisory for production"
    ]
    # Still heartbeating, from the installed agent alone.
    assert heartbeat_fresh(PRIMARY)
