"""A runner's facts as people read them: labels in words and values with units
("Disk free 60.0 GB of 100 GB (60 %)"), from the heartbeat's facts and the
exporter probe's detail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Decimal units, as disk vendors and ``df -H`` count.
UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))


@dataclass(frozen=True)
class Fact:
    label: str
    value: str
    source: str  # heartbeat | exporter


def size(n: int | float) -> str:
    for unit, scale in UNITS:
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


def seconds(n: int | float) -> str:
    total = int(n)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


HEARTBEAT_LABELS = {
    "runner_version": "Runner version",
    "load1": "Load (1 min)",
    "cpus": "CPUs",
    "uptime_seconds": "Uptime",
}
EXPORTER_LABELS = {
    "disk_free_percent": ("Disk free", "{} %"),
    "load1": ("Load (1 min)", "{}"),
    "cpus": ("CPUs", "{}"),
    "load_per_cpu": ("Load per CPU", "{}"),
    "latency_ms": ("Probe latency", "{} ms"),
}


def readable(runner: Any) -> list[Fact]:
    facts: dict[str, Any] = dict(runner.facts or {})
    out: list[Fact] = []
    free, total = (
        facts.pop("disk_free_bytes", None),
        facts.pop("disk_total_bytes", None),
    )
    if free is not None:
        text = size(free)
        if total:
            text += f" of {size(total)} ({round(100 * free / total)} %)"
        out.append(Fact("Disk free", text, "heartbeat"))
    elif total is not None:
        out.append(Fact("Disk size", size(total), "heartbeat"))
    load, cpus = facts.pop("load1", None), facts.get("cpus")
    if load is not None:
        text = f"{load}"
        if cpus:
            text += f" on {cpus} CPU{'s' if cpus != 1 else ''}"
        out.append(Fact("Load (1 min)", text, "heartbeat"))
        facts.pop("cpus", None)
    for key, value in facts.items():
        if key == "uptime_seconds" and isinstance(value, int | float):
            value = seconds(value)
        label = HEARTBEAT_LABELS.get(key, key.replace("_", " ").capitalize())
        out.append(Fact(label, str(value), "heartbeat"))
    for key, value in (runner.exporter_detail or {}).items():
        if key == "missing" and isinstance(value, list):
            out.append(Fact("Metrics missing", ", ".join(map(str, value)), "exporter"))
            continue
        label, template = EXPORTER_LABELS.get(
            key, (key.replace("_", " ").capitalize(), "{}")
        )
        out.append(Fact(label, template.format(value), "exporter"))
    return out
