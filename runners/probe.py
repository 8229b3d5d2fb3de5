"""The exporter probe: read each runner host's Prometheus exporter and judge it.

Every active runner with an ``exporter_url`` is fetched with bounded concurrency
(``EXPORTER_PROBE_CONCURRENCY`` threads) and a short timeout
(``EXPORTER_PROBE_TIMEOUT``). The node_exporter text is parsed with
prometheus_client's parser and judged by the same thresholds as heartbeat facts
(:func:`runners.health.assess_host`):

- disk: ``node_filesystem_avail_bytes / node_filesystem_size_bytes`` of mountpoint
  ``/`` below ``DISK_FREE_MIN_PERCENT`` → ``disk_low``;
- load: ``node_load1`` per CPU (CPUs counted from the
  ``node_cpu_seconds_total{mode="idle"}`` series) above ``LOAD_PER_CPU_MAX`` →
  ``load_high``;
- no answer, an HTTP error or unparseable text → ``exporter_unreachable``.

Results are written in bulk, a chunk of runners at a time, so a probe stopped
halfway keeps what it learnt. A ``HealthSample`` is written when a runner's
exporter verdict changes (not for every reading: 10,000 runners probed every minute
would be 14 million rows a day), which is what the timeline draws.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from runners.health import _insert, assess_host
from runners.models import HealthSample, Runner
from runners.states import Flag

logger = logging.getLogger(__name__)

# Runners fetched, then written, per round: bounds memory and the work lost if the
# task is stopped.
CHUNK = 1000
# A node_exporter page is 100-300 KiB; anything far larger is not one.
MAX_BYTES = 4 * 1024 * 1024
# Only these families are parsed: filtering lines first keeps parsing cheap on a
# full node_exporter page (thousands of series we do not read).
WANTED = (
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "node_load1",
    "node_cpu_seconds_total",
)
ROOT_MOUNTPOINT = "/"


@dataclass(frozen=True)
class Reading:
    """One exporter reading: ``ok`` if it answered and parsed, the problems it
    shows (``Flag.DISK_LOW``, ``Flag.LOAD_HIGH``) and the numbers behind them."""

    ok: bool
    problems: Flag = Flag(0)
    detail: dict[str, Any] = field(default_factory=dict)


def _wanted_lines(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[2].startswith(WANTED):
                lines.append(line)
        elif line.startswith(WANTED):
            lines.append(line)
    return "\n".join(lines) + "\n"


def parse_exporter(text: str) -> Reading:
    """Judge node_exporter ``text``; raises ``ValueError`` when it does not parse."""
    avail = size = load1 = None
    idle_cpus: set[str] = set()
    for family in text_string_to_metric_families(_wanted_lines(text)):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "node_filesystem_avail_bytes":
                if labels.get("mountpoint") == ROOT_MOUNTPOINT and avail is None:
                    avail = value
            elif name == "node_filesystem_size_bytes":
                if labels.get("mountpoint") == ROOT_MOUNTPOINT and size is None:
                    size = value
            elif name == "node_load1":
                load1 = value
            elif name == "node_cpu_seconds_total" and labels.get("mode") == "idle":
                idle_cpus.add(labels.get("cpu", str(len(idle_cpus))))
    cpus = len(idle_cpus) or None
    detail: dict[str, Any] = {}
    missing = []
    if avail is not None and size:
        detail["disk_free_percent"] = round(avail * 100 / size, 2)
    else:
        missing.append("node_filesystem_*{mountpoint='/'}")
    if load1 is not None:
        detail["load1"] = load1
    else:
        missing.append("node_load1")
    if cpus is not None:
        detail["cpus"] = cpus
        if load1 is not None:
            detail["load_per_cpu"] = round(load1 / cpus, 3)
    else:
        missing.append("node_cpu_seconds_total{mode='idle'}")
    if missing:
        detail["missing"] = missing
    problems = assess_host(
        disk_free_bytes=int(avail) if avail is not None else None,
        disk_total_bytes=int(size) if size else None,
        load1=load1,
        cpus=cpus,
    )
    return Reading(ok=True, problems=problems, detail=detail)


_sessions = threading.local()


def _session() -> requests.Session:
    # One keep-alive session per pool thread: requests' sessions are not shared
    # safely between threads.
    session: requests.Session | None = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return session


def read_exporter(url: str, *, timeout: float | None = None) -> Reading:
    """Fetch and judge one exporter; never raises (a failure is a bad reading)."""
    timeout = settings.EXPORTER_PROBE_TIMEOUT if timeout is None else timeout
    started = time.monotonic()
    try:
        with _session().get(url, timeout=timeout, stream=True) as response:
            if response.status_code != 200:
                return _unreachable(f"HTTP {response.status_code}", started)
            body = response.raw.read(MAX_BYTES + 1, decode_content=True)
        if len(body) > MAX_BYTES:
            return _unreachable("answer larger than 4 MiB", started)
        reading = parse_exporter(body.decode("utf-8", errors="replace"))
    except requests.Timeout:
        return _unreachable(f"no answer within {timeout:g} s", started)
    except requests.RequestException as exc:
        return _unreachable(_connection_error(exc), started)
    except ValueError as exc:
        return _unreachable(f"unparseable metrics: {str(exc)[:200]}", started)
    reading.detail["latency_ms"] = _elapsed_ms(started)
    return reading


def _connection_error(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _unreachable(error: str, started: float) -> Reading:
    return Reading(
        ok=False, detail={"error": error, "latency_ms": _elapsed_ms(started)}
    )


@dataclass(frozen=True)
class ProbeResult:
    """What one probe of the fleet found."""

    probed: int = 0
    ok: int = 0
    unreachable: int = 0
    problems: int = 0
    # Active runners with no exporter URL, so no exporter signal.
    without_exporter: int = 0


def probe_fleet(
    now: datetime | None = None,
    *,
    concurrency: int | None = None,
    timeout: float | None = None,
) -> ProbeResult:
    """Probe every active runner's exporter and record the readings.

    1. List active runners with an exporter URL (one query).
    2. Per chunk of ``CHUNK`` runners: fetch concurrently, then write the readings
       with one bulk UPDATE per 500 runners and one INSERT of samples for those
       whose verdict changed.
    """
    concurrency = concurrency or settings.EXPORTER_PROBE_CONCURRENCY
    active = Runner.objects.active()
    targets = list(
        active.exclude(exporter_url="")
        .order_by("pk")
        .values_list("pk", "exporter_url", "exporter_ok", "exporter_problems")
    )
    without = active.filter(exporter_url="").count()
    totals = {"ok": 0, "unreachable": 0, "problems": 0}
    with ThreadPoolExecutor(concurrency, thread_name_prefix="exporter-probe") as pool:
        for start in range(0, len(targets), CHUNK):
            chunk = targets[start : start + CHUNK]
            readings = list(
                pool.map(lambda row: read_exporter(row[1], timeout=timeout), chunk)
            )
            _record(chunk, readings, now or timezone.now())
            for reading in readings:
                totals["ok" if reading.ok else "unreachable"] += 1
                totals["problems"] += bool(reading.problems)
    return ProbeResult(probed=len(targets), without_exporter=without, **totals)


def _record(
    rows: Sequence[tuple[int, str, bool | None, int]],
    readings: Iterable[Reading],
    now: datetime,
) -> None:
    updates = []
    samples = []
    for (pk, _, was_ok, old_problems), reading in zip(rows, readings, strict=True):
        problems = int(reading.problems)
        updates.append(
            Runner(
                pk=pk,
                exporter_ok=reading.ok,
                exporter_problems=problems,
                exporter_checked_at=now,
                exporter_detail=reading.detail,
            )
        )
        if was_ok is not reading.ok or old_problems != problems:
            samples.append(
                HealthSample(
                    runner_id=pk,
                    source=HealthSample.Source.EXPORTER,
                    ok=reading.ok and not problems,
                    observed_at=now,
                    latency_ms=reading.detail.get("latency_ms"),
                    detail={**reading.detail, "problems": _problem_names(problems)},
                )
            )
    # 500 rows a statement: bulk_update's CASE grows with the batch, and a small
    # one keeps each statement's row locks (and heartbeats waiting on them) short.
    Runner.objects.bulk_update(
        updates,
        ["exporter_ok", "exporter_problems", "exporter_checked_at", "exporter_detail"],
        batch_size=500,
    )
    if samples:
        _insert(samples)


def _problem_names(problems: int) -> list[str]:
    names = []
    if problems & Flag.DISK_LOW:
        names.append("disk_low")
    if problems & Flag.LOAD_HIGH:
        names.append("load_high")
    return names
