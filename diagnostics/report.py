"""A diagnostics report: its validation, its key facts and what changed between two.

The report is the host script's JSON (``agent/runner-diagnostics``). Validation is
strict about shape and size (a report is stored and shown) and names the field that
is wrong; every string is redacted again before it is stored.
"""

from __future__ import annotations

import math
from typing import Any

MAX_BODY_BYTES = 64 * 1024
MAX_STRING = 1000
MAX_LIST = 50
MAX_DEPTH = 5

SECTIONS = {
    "version",
    "collected_at",
    "host",
    "memory",
    "disk",
    "runner",
    "clock",
    "network",
    "containers",
}
REQUIRED = {"version", "host", "disk", "runner", "network"}


class BadReport(ValueError):
    pass


def _check(value: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise BadReport(f"{where} is nested too deeply")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) >= 2**62:
            raise BadReport(f"{where} must be a finite number")
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise BadReport(f"{where} is longer than {MAX_STRING} characters")
        return
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            raise BadReport(f"{where} has more than {MAX_LIST} items")
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        if len(value) > MAX_LIST:
            raise BadReport(f"{where} has more than {MAX_LIST} fields")
        for key, item in value.items():
            if len(key) > 64:
                raise BadReport(f"{where} has a field name over 64 characters")
            _check(item, f"{where}.{key}", depth + 1)
        return
    raise BadReport(f"{where} has an unsupported value")


def validate(report: Any) -> dict[str, Any]:
    """The report if it is one, else ``BadReport`` naming what to fix."""
    if not isinstance(report, dict):
        raise BadReport("report must be a JSON object")
    unknown = sorted(set(report) - SECTIONS)
    if unknown:
        raise BadReport(f"report has unknown section(s): {', '.join(unknown)}")
    missing = sorted(REQUIRED - set(report))
    if missing:
        raise BadReport(f"report lacks section(s): {', '.join(missing)}")
    if report["version"] != 1:
        raise BadReport("report.version must be 1 (this control plane reads version 1)")
    for name in ("host", "memory", "disk", "runner", "clock", "containers"):
        if name in report and not isinstance(report[name], dict):
            raise BadReport(f"report.{name} must be an object")
    if not isinstance(report["network"], list) or not all(
        isinstance(target, dict) and isinstance(target.get("name"), str)
        for target in report["network"]
    ):
        raise BadReport("report.network must be a list of objects with a name")
    diag = report["runner"].get("diag", [])
    if not isinstance(diag, list) or not all(
        isinstance(tail, dict) and isinstance(tail.get("lines", []), list)
        for tail in diag
    ):
        raise BadReport("report.runner.diag must be a list of {file, lines}")
    _check(report, "report")
    return report


def _percent(part: Any, whole: Any) -> int | None:
    if isinstance(part, int | float) and isinstance(whole, int | float) and whole > 0:
        return round(100 * part / whole)
    return None


def key_facts(report: dict[str, Any]) -> dict[str, Any]:
    """The facts an SRE compares from one report to the next, as short values."""
    host, disk = report.get("host") or {}, report.get("disk") or {}
    memory, runner = report.get("memory") or {}, report.get("runner") or {}
    clock, containers = report.get("clock") or {}, report.get("containers") or {}
    facts: dict[str, Any] = {
        "disk free %": _percent(disk.get("free_bytes"), disk.get("total_bytes")),
        "inodes free %": _percent(disk.get("inodes_free"), disk.get("inodes_total")),
        "memory available %": _percent(
            memory.get("available_bytes"), memory.get("total_bytes")
        ),
        "load1": host.get("load1"),
        "runner version": runner.get("version"),
        "runner service": runner.get("service"),
        "clock offset s": clock.get("offset_seconds"),
        "containers": containers.get("status"),
    }
    for target in report.get("network") or []:
        name = target.get("name")
        if target.get("dns_error"):
            state = "DNS fails"
        elif target.get("reachable"):
            state = "reachable"
        else:
            state = "unreachable"
        facts[f"{name}"] = state
    return {key: value for key, value in facts.items() if value is not None}


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """What changed between two reports' key facts: ``[{fact, before, after}]``.
    Load and small moves of percentages are noise, so only moves of 5 points or
    more count for those."""
    changed = []
    for fact in sorted(set(before) | set(after)):
        old, new = before.get(fact), after.get(fact)
        if fact == "load1":
            continue
        if (
            fact.endswith("%")
            and isinstance(old, int | float)
            and isinstance(new, int | float)
            and abs(old - new) < 5
        ):
            continue
        if fact == "clock offset s" and isinstance(old, int | float):
            if isinstance(new, int | float) and abs(old - new) < 1:
                continue
        if old != new:
            changed.append({"fact": fact, "before": old, "after": new})
    return changed
