"""The host-side diagnostics script, run for real by python3 against a stub host root
and a live control plane: what it collects, what it redacts, how it fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from diagnostics.models import HostRun
from diagnostics.redact import SCRIPT, redact, script
from runners.models import Runner
from tests.factories import runner_with_token
from tests.hostroot import CANARY, RUNNER_VERSION, leaked, make_host_root


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def in_flight(runner: Runner) -> HostRun:
    now = timezone.now()
    return HostRun.objects.create(
        runner=runner,
        kind=HostRun.Kind.DIAGNOSTICS,
        state=HostRun.State.RUNNING,
        requested_by="sam-sre",
        deadline=now + timedelta(minutes=10),
    )


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_script_reports_the_stub_host_and_redacts_the_canary(
    live_server: Any, tmp_path: Path
) -> None:
    runner, token = runner_with_token("prod-primary-1")
    run = in_flight(runner)
    root = make_host_root(tmp_path / "host")

    result = run_script(
        {
            "CONTROLPLANE_URL": live_server.url,
            "HEARTBEAT_TOKEN": token,
            "DIAGNOSTICS_TOKEN": run.token,
            "HOST_ROOT": str(root),
            "GITHUB_API_URL": live_server.url,
            # Nothing listens on port 9: the firewall question, answered "no".
            "PROMETHEUS_URL": "http://127.0.0.1:9",
            "EXPORTER_URL": "http://127.0.0.1:9/metrics",
            "DIAGNOSTICS_TIMEOUT": "2",
        }
    )

    assert result.returncode == 0, result.stderr
    assert leaked(result.stdout + result.stderr) == []
    assert token not in result.stdout + result.stderr
    run.refresh_from_db()
    assert run.state == HostRun.State.SUCCEEDED
    assert run.reported_at is not None
    report = run.report
    assert isinstance(report, dict)
    assert leaked(json.dumps(report)) == []
    assert report["host"]["load1"] == 0.52
    assert report["host"]["uptime_seconds"] == 86400
    assert report["memory"]["available_bytes"] == 6000000 * 1024
    assert report["runner"]["version"] == RUNNER_VERSION
    assert report["runner"]["service"].startswith(
        "actions.runner.acme-deploy.prod-primary-1.service: installed"
    )
    runner_log = report["runner"]["diag"][0]
    assert runner_log["file"] == "Runner_20261202-010101-utc.log"
    assert "Connection to broker lost" in runner_log["lines"][-1]
    assert any("[REDACTED]" in line for line in runner_log["lines"])
    targets = {t["name"]: t for t in report["network"]}
    assert targets["controlplane"]["reachable"] is True
    assert targets["prometheus"]["reachable"] is False
    assert "refused" in targets["prometheus"]["error"].lower()
    assert abs(report["clock"]["offset_seconds"]) < 5
    assert run.facts["prometheus"] == "unreachable"
    assert run.facts["controlplane"] == "reachable"
    assert run.facts["memory available %"] == 75


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_script_says_why_the_control_plane_refused_the_report(
    live_server: Any, tmp_path: Path
) -> None:
    runner, token = runner_with_token("prod-primary-1")
    result = run_script(
        {
            "CONTROLPLANE_URL": live_server.url,
            "HEARTBEAT_TOKEN": token,
            "DIAGNOSTICS_TOKEN": "diag-never-requested",
            "HOST_ROOT": str(make_host_root(tmp_path / "host")),
            "DIAGNOSTICS_TIMEOUT": "1",
            "GITHUB_API_URL": "http://127.0.0.1:9",
        }
    )
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr
    assert "no diagnostics run diag-never-requested" in result.stderr
    assert not HostRun.objects.filter(runner=runner).exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "CONTROLPLANE_URL is not set"),
        ({"CONTROLPLANE_URL": "ftp://x"}, "must start with http"),
        (
            {"CONTROLPLANE_URL": "http://127.0.0.1:9", "DIAGNOSTICS_TOKEN": "a b"},
            "DIAGNOSTICS_TOKEN must be",
        ),
        (
            {"CONTROLPLANE_URL": "http://127.0.0.1:9", "DIAGNOSTICS_TOKEN": "diag-1"},
            "no runner token",
        ),
        (
            {
                "CONTROLPLANE_URL": "http://127.0.0.1:9",
                "DIAGNOSTICS_TOKEN": "diag-1",
                "HEARTBEAT_TOKEN": 'x" -H evil',
            },
            "not a runner token",
        ),
    ],
)
def test_script_refuses_bad_configuration(env: dict[str, str], message: str) -> None:
    result = run_script(env)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {CANARY}",
        f"curl -H 'authorization: token {CANARY}'",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "ghs_0123456789abcdefghijABCDEFGHIJ",
        "password=hunter2",
        'DB_PASSWORD: "hunter2"',
        '{"api_key": "hunter2"}',
        "https://deploy:hunter2@registry.example.com/v2/",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nhunter2\n-----END OPENSSH PRIVATE KEY-----",
        "rhb_" + "A" * 43,
        "AKIAABCDEFGHIJKLMNOP",
    ],
)
def test_redaction_removes_secret_looking_values(text: str) -> None:
    redacted = redact(text)
    assert "[REDACTED]" in redacted
    for secret in ("hunter2", CANARY, "A" * 43, "AKIAABCDEFGHIJKLMNOP"):
        assert secret not in redacted
    assert "abcdefghijklmnopqrstuvwxyz" not in redacted
    assert "0123456789abcdefghij" not in redacted


def test_redaction_keeps_ordinary_log_lines() -> None:
    line = (
        "[2026-12-02 01:01:05Z INFO Runner] Job deploy completed with result: Succeeded"
    )
    assert redact(line) == line


def test_a_report_too_large_drops_its_oldest_log_lines_first() -> None:
    lines = [f"{n:03d} " + "é" * 390 for n in range(40)]  # \u00e9 is 6 bytes in JSON
    report: dict[str, Any] = {
        "runner": {"diag": [{"file": "Runner_1.log", "lines": list(lines)}]}
    }

    body = script.fitted("diag-1", report)

    assert len(body) <= 60 * 1024
    kept = json.loads(body)["report"]["runner"]["diag"][0]["lines"]
    assert 0 < len(kept) < 40
    assert kept == lines[-len(kept) :]  # the newest lines stay
