"""The runner-host agent: the real script, run by sh, against a live control plane."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runners.models import Runner
from tests.factories import runner_with_token

AGENT = Path(__file__).resolve().parent.parent / "agent"
SCRIPT = AGENT / "runner-heartbeat"

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None, reason="the agent needs curl"
)


def run_agent(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPT)],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )


@pytest.fixture
def runner_dir(tmp_path: Path) -> Path:
    """An actions runner directory whose listener reports its version."""
    path = tmp_path / "actions-runner"
    (path / "bin").mkdir(parents=True)
    listener = path / "bin" / "Runner.Listener"
    listener.write_text("#!/bin/sh\necho 2.328.0\n")
    listener.chmod(0o755)
    return path


def make_runner_with_token(tmp_path: Path) -> tuple[Runner, Path]:
    runner, token = runner_with_token()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return runner, token_file


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_agent_sends_a_heartbeat_with_host_facts(
    live_server: Any, tmp_path: Path, runner_dir: Path
) -> None:
    runner, token_file = make_runner_with_token(tmp_path)
    result = run_agent(
        tmp_path,
        {
            "CONTROLPLANE_URL": live_server.url + "/",
            "HEARTBEAT_TOKEN_FILE": str(token_file),
            "RUNNER_DIR": str(runner_dir),
        },
    )
    assert result.returncode == 0, result.stderr
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is not None
    facts = runner.facts
    assert facts["runner_version"] == "2.328.0"
    assert facts["cpus"] == os.cpu_count()
    assert 0 < facts["disk_free_bytes"] <= facts["disk_total_bytes"]
    assert (
        facts["disk_total_bytes"] == shutil.disk_usage(runner_dir).total // 1024 * 1024
    )
    assert facts["load1"] >= 0
    assert facts["uptime_seconds"] > 0


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_agent_reads_the_systemd_credential_and_fails_on_a_revoked_token(
    live_server: Any, tmp_path: Path
) -> None:
    runner, token_file = make_runner_with_token(tmp_path)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    shutil.copy(token_file, credentials / "token")
    env = {
        "CONTROLPLANE_URL": live_server.url,
        "CREDENTIALS_DIRECTORY": str(credentials),
        "RUNNER_DIR": str(tmp_path / "missing"),
    }
    assert run_agent(tmp_path, env).returncode == 0
    runner.refresh_from_db()
    first = runner.last_heartbeat_at
    assert first is not None
    assert "runner_version" not in runner.facts

    runner.revoke_heartbeat_token("ada-admin")
    result = run_agent(tmp_path, env)
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    runner.refresh_from_db()
    assert runner.last_heartbeat_at == first


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_agent_follows_the_shorter_interval_while_its_runner_holds_a_deploy(
    live_server: Any, tmp_path: Path, settings: Any
) -> None:
    # The timer starts the agent every 3 s here; holding a deploy, the answer asks
    # for a heartbeat every second, so one run sends more than one.
    settings.HEARTBEAT_DEPLOY_INTERVAL = 1
    runner, token_file = make_runner_with_token(tmp_path)
    env = {
        "CONTROLPLANE_URL": live_server.url,
        "HEARTBEAT_TOKEN_FILE": str(token_file),
        "RUNNER_DIR": str(tmp_path / "missing"),
        "HEARTBEAT_PERIOD": "3",
    }
    Runner.objects.filter(pk=runner.pk).update(holds_deploy=True)
    result = run_agent(tmp_path, env)
    assert result.returncode == 0, result.stderr
    runner.refresh_from_db()
    assert runner.first_seen_at is not None
    assert runner.last_heartbeat_at is not None
    assert runner.last_heartbeat_at > runner.first_seen_at
    assert runner.heartbeat_deadline == runner.last_heartbeat_at + timedelta(
        seconds=settings.HEARTBEAT_DEPLOY_STALE_AFTER
    )

    # Back to one heartbeat per start, with the normal deadline, after the deploy.
    Runner.objects.filter(pk=runner.pk).update(
        holds_deploy=False, first_seen_at=None, last_heartbeat_at=None
    )
    result = run_agent(tmp_path, env)
    assert result.returncode == 0, result.stderr
    runner.refresh_from_db()
    assert runner.last_heartbeat_at is not None
    assert runner.last_heartbeat_at == runner.first_seen_at
    assert runner.heartbeat_deadline == runner.last_heartbeat_at + timedelta(
        seconds=settings.HEARTBEAT_STALE_AFTER
    )


def test_agent_refuses_a_bad_period(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("rhb_abc\n")
    result = run_agent(
        tmp_path,
        {
            "CONTROLPLANE_URL": "http://127.0.0.1:9",
            "HEARTBEAT_TOKEN_FILE": str(token_file),
            "HEARTBEAT_PERIOD": "ten",
        },
    )
    assert result.returncode == 2
    assert "HEARTBEAT_PERIOD must be a whole number" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "CONTROLPLANE_URL is not set"),
        ({"CONTROLPLANE_URL": "ftp://x"}, "must start with http"),
        (
            {"CONTROLPLANE_URL": "http://127.0.0.1:9", "HEARTBEAT_TOKEN_FILE": "/nope"},
            "cannot read the token file",
        ),
    ],
)
def test_agent_refuses_bad_configuration(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = run_agent(tmp_path, env)
    assert result.returncode == 2
    assert message in result.stderr


def test_agent_refuses_a_token_file_that_is_not_a_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text('x"\nheader = "Host: evil"\n')
    result = run_agent(
        tmp_path,
        {
            "CONTROLPLANE_URL": "http://127.0.0.1:9",
            "HEARTBEAT_TOKEN_FILE": str(token_file),
        },
    )
    assert result.returncode == 2
    assert "does not hold a runner token" in result.stderr


def test_agent_reports_an_unreachable_control_plane(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("rhb_abc\n")
    result = run_agent(
        tmp_path,
        {
            "CONTROLPLANE_URL": "http://127.0.0.1:9",
            "HEARTBEAT_TOKEN_FILE": str(token_file),
            "HEARTBEAT_TIMEOUT": "2",
        },
    )
    assert result.returncode == 1
    assert "could not reach" in result.stderr


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze"
)
def test_systemd_units_are_valid(tmp_path: Path) -> None:
    service = (AGENT / "runner-heartbeat.service").read_text()
    # Point ExecStart at the script in the repository so verify can check it exists.
    (tmp_path / "runner-heartbeat.service").write_text(
        service.replace("/usr/local/bin/runner-heartbeat", str(SCRIPT))
    )
    shutil.copy(AGENT / "runner-heartbeat.timer", tmp_path)
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            str(tmp_path / "runner-heartbeat.service"),
            str(tmp_path / "runner-heartbeat.timer"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Unknown" not in result.stderr, result.stderr
    assert "OnUnitActiveSec=10s" in (AGENT / "runner-heartbeat.timer").read_text()
