"""The agent installer, run for real by sh against a fake host root: no systemctl, so
the user-level fallback (a crontab line); the token stays private and out of its
output; the installed agent heartbeats; running it again upgrades in place; and the
same through the agent-install workflow in the simulator."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from diagnostics import domain
from diagnostics.models import HostRun
from diagnostics.tasks import dispatch_host_run
from githubsim import Simulator
from runners.models import Runner
from tests.conftest import ROOT
from tests.factories import runner_with_token

AGENT = Path(__file__).resolve().parent.parent / "agent"
INSTALLER = AGENT / "install-runner-heartbeat"

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None, reason="the agent needs curl"
)


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Path]:
    """A fake root with the runner's home, and a bin folder holding the system's
    tools except systemctl, plus a crontab(1) that keeps the table in a file."""
    root = tmp_path / "root"
    (root / "home/runner").mkdir(parents=True)
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in (
        "sh",
        "cat",
        "dirname",
        "mkdir",
        "chmod",
        "install",
        "grep",
        "curl",
        "df",
        "awk",
        "head",
        "sed",
        "readlink",
        "getconf",
        "id",
        "sleep",
        "date",
        "tail",
        "tr",
        "printf",
    ):
        found = shutil.which(tool)
        if found:
            (tools / tool).symlink_to(found)
    table = tmp_path / "crontab.txt"
    crontab = tools / "crontab"
    crontab.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -l ]; then cat "{table}" 2>/dev/null || exit 1; '
        f'else cat > "{table}"; fi\n'
    )
    crontab.chmod(0o755)
    return {"root": root, "tools": tools, "table": table}


def simulate_agent_workflow(
    sim: Simulator, host: dict[str, Path], controlplane: str, name: str
) -> Path:
    """Give the simulator the shipped agent-install workflow, its jobs running the
    real installer against ``<hosts>/<runner name>``: a copy of ``host``'s root for
    runner ``name``. Returns ``hosts``."""
    hosts = host["root"].parent / "hosts"
    shutil.copytree(host["root"], hosts / name, symlinks=True)
    sim.set_workflow(
        "runner-agent.yml",
        yaml=(ROOT / "diagnostics/workflows/runner-agent.yml").read_text(),
    )
    sim.set_workflow_command(
        "runner-agent.yml",
        {
            "argv": [str(host["tools"] / "sh"), str(INSTALLER)],
            "env": {
                "PATH": str(host["tools"]),
                "HOME": "/home/runner",
                "AGENT_SOURCE": str(AGENT),
                "CONTROLPLANE_URL": controlplane,
                "HEARTBEAT_TOKEN": "${{ secrets.RUNNER_HEARTBEAT_TOKEN }}",
            },
            "hosts_dir": str(hosts),
        },
    )
    return hosts


def install(
    host: dict[str, Path], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(host["tools"] / "sh"), str(INSTALLER)],
        env={
            "PATH": str(host["tools"]),
            "HOME": "/home/runner",
            "HOST_ROOT": str(host["root"]),
            "AGENT_SOURCE": str(AGENT),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_installs_a_crontab_agent_without_systemctl_and_it_heartbeats(
    live_server: Any, host: dict[str, Path]
) -> None:
    runner, token = runner_with_token("prod-primary-1")

    result = install(
        host, {"HEARTBEAT_TOKEN": token, "CONTROLPLANE_URL": live_server.url}
    )

    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    assert "installed a crontab line" in result.stdout
    assert "first heartbeat recorded" in result.stdout
    home = host["root"] / "home/runner"
    token_file = home / ".config/runner-heartbeat/token"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert token not in (home / ".config/runner-heartbeat/env").read_text()
    lines = host["table"].read_text().splitlines()
    assert lines == [
        f"* * * * * {home}/.local/bin/runner-heartbeat-minute >/dev/null 2>&1 "
        "# runner-heartbeat"
    ]
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is not None
    first = runner.last_heartbeat_at

    # The token is rotated and the install runs again: an upgrade in place, one
    # crontab line still, the other lines of the table kept.
    host["table"].write_text("0 3 * * * /usr/bin/backup\n" + "\n".join(lines) + "\n")
    new_token = runner.issue_heartbeat_token("ada-admin")
    again = install(
        host, {"HEARTBEAT_TOKEN": new_token, "CONTROLPLANE_URL": live_server.url}
    )
    assert again.returncode == 0, again.stderr
    assert token_file.read_text().strip() == new_token
    assert host["table"].read_text().splitlines() == [
        "0 3 * * * /usr/bin/backup",
        *lines,
    ]
    runner.refresh_from_db()
    assert runner.last_heartbeat_at > first


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "HEARTBEAT_TOKEN is empty"),
        ({"HEARTBEAT_TOKEN": "x y"}, "does not hold a runner token"),
        ({"HEARTBEAT_TOKEN": "rhb_abc"}, "CONTROLPLANE_URL is not set"),
        (
            {"HEARTBEAT_TOKEN": "rhb_abc", "CONTROLPLANE_URL": "http://x/$(reboot)"},
            "characters a URL may not hold",
        ),
    ],
)
def test_installer_refuses_bad_configuration_without_echoing_the_token(
    host: dict[str, Path], env: dict[str, str], message: str
) -> None:
    result = install(host, env)
    assert result.returncode == 2
    assert message in result.stderr
    if env.get("HEARTBEAT_TOKEN"):
        assert env["HEARTBEAT_TOKEN"] not in result.stdout + result.stderr
    assert not (host["root"] / "home/runner/.config/runner-heartbeat").exists()


def test_installer_says_when_nothing_can_schedule_the_agent(
    host: dict[str, Path],
) -> None:
    (host["tools"] / "crontab").unlink()
    result = install(
        host, {"HEARTBEAT_TOKEN": "rhb_abc", "CONTROLPLANE_URL": "http://127.0.0.1:9"}
    )
    assert result.returncode == 2
    assert "no way to schedule the agent" in result.stderr
    assert os.path.exists(host["root"] / "home/runner/.local/bin/runner-heartbeat")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.sim(connect=True, pickup_delay=0.1)
def test_agent_installed_through_the_workflow_in_the_simulator(
    live_server: Any, sim: Simulator, host: dict[str, Path], sre_client: Client
) -> None:
    """The runner page's offer end to end: dispatch, the simulated job runs the real
    installer on the runner's fake root, the agent's first heartbeat arrives, the
    watch sees the run succeed."""
    runner, token = runner_with_token("prod-primary-1", github_status="online")
    sim.add_runner("prod-primary-1", ["self-hosted", "linux"])
    sim.set_heartbeat_token("prod-primary-1", token)
    hosts = simulate_agent_workflow(sim, host, live_server.url, "prod-primary-1")
    assert not Runner.objects.filter(last_heartbeat_at__isnull=False).exists()

    answer = sre_client.post("/api/v1/runner-diagnostics/prod-primary-1/install-agent/")
    assert answer.status_code == 202, answer.content
    run = HostRun.objects.get(token=answer.json()["token"])
    dispatch_host_run(run.pk)
    run.refresh_from_db()
    assert run.github_run_id is not None
    github_run = sim.state.run_by_id(run.github_run_id)
    deadline = time.monotonic() + 30
    while github_run.status != "completed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert github_run.conclusion == "success", sim.state.run_jobs(github_run)[0].note

    domain.watch(run, run.requested_at + timedelta(seconds=1))

    run.refresh_from_db()
    assert run.state == HostRun.State.SUCCEEDED
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is not None
    note = sim.state.run_jobs(github_run)[0].note
    assert "first heartbeat recorded" in note
    assert token not in note
    assert (
        hosts / "prod-primary-1/home/runner/.config/runner-heartbeat/token"
    ).exists()
