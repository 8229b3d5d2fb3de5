"""What a runner's host reports about itself: heartbeat bodies and node_exporter text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from githubsim.models import Runner


@dataclass(frozen=True)
class Heartbeat:
    """One heartbeat a runner host is due to send."""

    runner_name: str
    token: str
    body: dict[str, Any]
    # The simulated time it was due, and whether the agent follows the answer's
    # interval (then it says so in the request).
    at: float = 0.0
    follows_interval: bool = False


def heartbeat_body(runner: Runner, now: float) -> dict[str, Any]:
    return {
        "runner_version": runner.version,
        "disk_free_bytes": runner.disk_free_bytes,
        "disk_total_bytes": runner.disk_total_bytes,
        "load1": runner.load1,
        "cpus": runner.cpus,
        "uptime_seconds": int(now - runner.booted_at),
    }


def exporter_text(runner: Runner, now: float) -> str:
    """Prometheus text in node_exporter's metric names, for the root filesystem."""
    uptime = max(0.0, now - runner.booted_at)
    idle_share = max(0.0, 1.0 - runner.load1 / runner.cpus)
    fs = 'device="/dev/sda1",fstype="ext4",mountpoint="/"'
    lines = [
        "# HELP node_filesystem_avail_bytes Filesystem space available.",
        "# TYPE node_filesystem_avail_bytes gauge",
        f"node_filesystem_avail_bytes{{{fs}}} {runner.disk_free_bytes}",
        "# HELP node_filesystem_size_bytes Filesystem size in bytes.",
        "# TYPE node_filesystem_size_bytes gauge",
        f"node_filesystem_size_bytes{{{fs}}} {runner.disk_total_bytes}",
        "# HELP node_load1 1m load average.",
        "# TYPE node_load1 gauge",
        f"node_load1 {runner.load1}",
        "# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.",
        "# TYPE node_memory_MemAvailable_bytes gauge",
        f"node_memory_MemAvailable_bytes {runner.memory_available_bytes}",
        "# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.",
        "# TYPE node_memory_MemTotal_bytes gauge",
        f"node_memory_MemTotal_bytes {runner.memory_total_bytes}",
        "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.",
        "# TYPE node_cpu_seconds_total counter",
    ]
    idle = uptime * idle_share
    lines += [
        f'node_cpu_seconds_total{{cpu="{cpu}",mode="idle"}} {idle:.2f}'
        for cpu in range(runner.cpus)
    ]
    lines += [
        "# HELP node_time_seconds System time in seconds since epoch (1970).",
        "# TYPE node_time_seconds gauge",
        f"node_time_seconds {now:.3f}",
    ]
    return "\n".join(lines) + "\n"
