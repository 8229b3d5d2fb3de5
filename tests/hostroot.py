"""A fake runner host root for the host-side scripts: stub /proc files, the actions
runner's directory with its listener and _diag logs, its systemd unit."""

from __future__ import annotations

import sys
from pathlib import Path

from githubsim import Simulator

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "diagnostics/workflows/runner-diagnostics.yml"
SCRIPT = ROOT / "agent/runner-diagnostics"

RUNNER_VERSION = "2.330.0"
# A value that must never leave the host: it is in the runner's log, as a token and
# as a password, and in a private key block.
CANARY = "ghp_" + "Canary0Secret0Value0Must0Not0Leak0" + "42"
CANARY_PASSWORD = "hunter2-canary-password"  # noqa: S105
CANARY_KEY_LINE = "MIIEcanaryPrivateKeyMaterialLine0123456789abcdef"


def make_host_root(root: Path, name: str = "prod-primary-1") -> Path:
    """Write a host's files under ``root`` and return it."""
    proc = root / "proc"
    proc.mkdir(parents=True)
    (proc / "loadavg").write_text("0.52 0.40 0.31 1/234 5678\n")
    (proc / "uptime").write_text("86400.12 170000.00\n")
    (proc / "meminfo").write_text(
        "MemTotal:        8000000 kB\n"
        "MemFree:         1000000 kB\n"
        "MemAvailable:    6000000 kB\n"
        "SwapTotal:       2000000 kB\n"
        "SwapFree:        2000000 kB\n"
    )
    runner_dir = root / "home/runner/actions-runner"
    (runner_dir / "bin").mkdir(parents=True)
    listener = runner_dir / "bin/Runner.Listener"
    listener.write_text(f"#!/bin/sh\necho {RUNNER_VERSION}\n")
    listener.chmod(0o755)
    diag = runner_dir / "_diag"
    diag.mkdir()
    (diag / "Runner_20261202-010101-utc.log").write_text(
        "[2026-12-02 01:01:01Z INFO Runner] Listening for Jobs\n"
        f"[2026-12-02 01:01:02Z INFO GitHubClient] Authorization: Bearer {CANARY}\n"
        f"[2026-12-02 01:01:03Z WARN Config] password={CANARY_PASSWORD}\n"
        "-----BEGIN RSA PRIVATE KEY-----\n"
        f"{CANARY_KEY_LINE}\n"
        "-----END RSA PRIVATE KEY-----\n"
        f"[2026-12-02 01:01:04Z INFO Runner] token {CANARY} refreshed\n"
        "[2026-12-02 01:01:05Z ERR  Runner] Connection to broker lost\n"
    )
    (diag / "Worker_20261202-010200-utc.log").write_text(
        "[2026-12-02 01:02:00Z INFO Worker] Job diagnose started\n"
    )
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / f"actions.runner.acme-deploy.{name}.service").write_text("[Unit]\n")
    (root / "home/runner/.config").mkdir(parents=True)
    return root


def leaked(text: str) -> list[str]:
    """The canary values found in ``text``."""
    return [c for c in (CANARY, CANARY_PASSWORD, CANARY_KEY_LINE) if c in text]


def simulate_diagnostics_workflow(
    sim: Simulator, controlplane: str, hosts: Path
) -> None:
    """Give the simulator the shipped diagnostics workflow, its jobs running the real
    script against ``<hosts>/<runner name>``, with the environment its step maps."""
    sim.set_workflow("runner-diagnostics.yml", yaml=WORKFLOW.read_text())
    sim.set_workflow_command(
        "runner-diagnostics.yml",
        {
            "argv": [sys.executable, str(SCRIPT)],
            "env": {
                "CONTROLPLANE_URL": controlplane,
                "DIAGNOSTICS_TOKEN": "${{ inputs.token }}",
                "HEARTBEAT_TOKEN": "${{ secrets.RUNNER_HEARTBEAT_TOKEN }}",
                # Prometheus behind a firewall, no exporter: nothing on port 9.
                "PROMETHEUS_URL": "http://127.0.0.1:9",
                "EXPORTER_URL": "http://127.0.0.1:9/metrics",
                "DIAGNOSTICS_TIMEOUT": "2",
            },
            "hosts_dir": str(hosts),
        },
    )
