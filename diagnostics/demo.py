"""The demo's diagnostics: two reports from the seed's primary, stored through the
same path a host's report takes (``domain.record_report``: redaction, key facts,
audit), so its runner page shows a latest report, a history and what changed; and
the shipped canary workflow installed in the demo's simulator, so canaries run.

The reports are what ``agent/runner-diagnostics`` sends from a host whose
Prometheus is behind a firewall: GitHub and the control plane reachable, Prometheus
not (the seed's question, answered from the host's side).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from diagnostics import canary_conf, conf, domain
from diagnostics.models import HostRun
from runners.models import Runner

ACTOR = "demo"
# (collected this long before the load, disk free %, runner version)
REPORTS = (
    (timedelta(days=1), 41, "2.329.0"),
    (timedelta(minutes=20), 22, "2.330.0"),
)
GIB = 1024**3


CANARY_WORKFLOW = Path(__file__).parent / "workflows" / "runner-canary.yml"


def install_canary_workflow(session: requests.Session, base: str) -> bool:
    """Give the demo simulator's repository the shipped canary workflow (what an
    SRE adopting canaries copies into ``.github/workflows/``); False when the
    simulator refused it."""
    path = f"/_sim/repos/{conf.repository()}/workflows/{canary_conf.workflow()}"
    response = session.put(
        base + path, json={"yaml": CANARY_WORKFLOW.read_text()}, timeout=10
    )
    return response.status_code < 400


def seed(runner: Runner, now: datetime) -> int:
    """Store the demo reports for ``runner`` unless it has diagnostics already (a
    second demo load changes nothing); the number stored."""
    kind = HostRun.Kind.DIAGNOSTICS
    if HostRun.objects.filter(runner=runner, kind=kind).exists():
        return 0
    for ago, free, version in REPORTS:
        at = now - ago
        run = HostRun.objects.create(
            runner=runner,
            kind=kind,
            state=HostRun.State.RUNNING,
            requested_by=ACTOR,
            requested_at=at - timedelta(seconds=40),
            deadline=at + timedelta(minutes=10),
        )
        status, error = domain.record_report(
            runner, run.token, report(runner.name, at, free, version), at
        )
        if status != 201:
            raise RuntimeError(f"the demo report was refused: {error}")
    return len(REPORTS)


def report(name: str, at: datetime, free: int, version: str) -> dict[str, Any]:
    total = 200 * GIB
    return {
        "version": 1,
        "collected_at": at.isoformat(),
        "host": {
            "hostname": name,
            "load1": 0.61,
            "load5": 0.48,
            "load15": 0.4,
            "uptime_seconds": 3_456_000,
            "cpus": 8,
        },
        "memory": {
            "total_bytes": 32 * GIB,
            "available_bytes": 21 * GIB,
            "swap_total_bytes": 0,
            "swap_free_bytes": 0,
        },
        "disk": {
            "path": "/home/runner/actions-runner",
            "total_bytes": total,
            "free_bytes": total * free // 100,
            "inodes_total": 13_107_200,
            "inodes_free": 11_900_000,
        },
        "runner": {
            "version": version,
            "service": f"actions.runner.acme-deploy.{name}.service: active (running)",
            "diag": [
                {
                    "file": "Runner_20261201-060000-utc.log",
                    "lines": [
                        "[2026-12-01 06:00:01Z INFO Runner] Listening for Jobs",
                        "[2026-12-01 06:00:02Z INFO GitHubClient] Authorization: "
                        "[REDACTED]",
                        "[2026-12-01 09:14:07Z INFO JobDispatcher] Job deploy "
                        "completed with result: Succeeded",
                    ],
                }
            ],
        },
        "clock": {"source": "control plane Date header", "offset_seconds": 0.2},
        "network": [
            _target("github", "https://api.github.com", "140.82.112.6", True),
            _target("controlplane", "https://cp.example.com", "10.0.8.4", True),
            _target("prometheus", "http://prometheus.example.com:9090", "10.0.9.2"),
            _target("exporter", "http://127.0.0.1:9100", "127.0.0.1", True),
        ],
        "containers": {"engine": "docker", "status": "running (server 27.3.1)"},
    }


def _target(
    name: str, url: str, address: str, reachable: bool = False
) -> dict[str, Any]:
    target: dict[str, Any] = {
        "name": name,
        "url": url,
        "addresses": [address],
        "reachable": reachable,
    }
    if not reachable:
        target["error"] = "timed out"
    return target
