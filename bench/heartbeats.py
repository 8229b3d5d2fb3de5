"""Heartbeat ingest under load: the real endpoint, gunicorn, PostgreSQL, wrk.

    python -m bench.heartbeats --runners 10000 --seconds 30

Creates ``--runners`` runners with heartbeat tokens in ``DATABASE_URL`` (default a
``bench_heartbeats`` PostgreSQL database on localhost), serves the control plane with
gunicorn as in production (gthread, 2 workers x 4 threads, DEBUG off, persistent
database connections), and drives ``POST /heartbeat`` from a separate process:
Debian's ``wrk`` with a Lua script that sends each request with a random runner's
token and a full set of facts, as the shipped agent does (saying it follows the
answered interval). Reports throughput, latency percentiles and errors
(socket errors, any non-2xx answer, and heartbeats that did not land in the
database).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import database_url, emit, setup_django

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_heartbeats"

LUA = r"""
local tokens = {}
local body = '{"runner_version":"2.328.0","disk_free_bytes":53687091200,' ..
  '"disk_total_bytes":107374182400,"load1":0.42,"cpus":4,"uptime_seconds":3600}'
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  math.randomseed(os.time() * 100 + id)
end

function request()
  local token = tokens[math.random(#tokens)]
  return wrk.format("POST", "/heartbeat", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["X-Heartbeat-Follow-Interval"] = "1",
  }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "errors": %d, ' ..
    '"non_2xx": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def make_fleet(size: int, folder: Path) -> Path:
    """Replace the runners with ``size`` new ones; write their tokens to a file."""
    from runners.models import HealthSample, Runner, RunnerEvent, token_digest

    RunnerEvent.objects.all().delete()
    HealthSample.objects.all().delete()
    Runner.objects.all().delete()
    tokens = ["rhb_" + secrets.token_urlsafe(32) for _ in range(size)]
    Runner.objects.bulk_create(
        (
            Runner(name=f"bench-{i:06d}", heartbeat_token_digest=token_digest(token))
            for i, token in enumerate(tokens)
        ),
        batch_size=2000,
    )
    path = folder / "tokens.txt"
    path.write_text("\n".join(tokens) + "\n")
    path.chmod(0o600)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(
    port: int, url: str, workers: int, threads: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "GITHUB_WEBHOOK_SECRET": secrets.token_urlsafe(16),
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "controlplane.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread",
            "--backlog",
            "2048",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server
        except OSError:
            time.sleep(0.2)
    stop(server)
    raise SystemExit("gunicorn did not start")


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def cpu_seconds(master: int) -> float:
    """CPU time used so far by gunicorn's workers (children of ``master``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:  # ppid
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=30)
    # wrk is a closed loop: each connection waits for its answer, so latency is
    # about connections / throughput. 32 connections already offer more than the
    # 1,000 heartbeats/s of 10,000 runners every 10 s; more only lengthen the queue.
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    url = database_url(DEFAULT_URL)
    setup_django(url)
    from django.db import connection
    from django.utils import timezone

    from runners.models import Runner

    folder = Path(tempfile.mkdtemp(prefix="bench-heartbeats-"))
    tokens = make_fleet(args.runners, folder)
    script = folder / "heartbeat.lua"
    script.write_text(LUA)
    connection.close()
    port = free_port()
    server = start_gunicorn(port, url, args.workers, args.threads)
    try:
        # A short warm-up, so every worker thread has its database connection.
        subprocess.run(
            [wrk, "-t1", "-c8", "-d2s", "-s", str(script),
             f"http://127.0.0.1:{port}/heartbeat", "--", str(tokens)],
            check=True, capture_output=True,
        )  # fmt: skip
        started = timezone.now()
        cpu_before = cpu_seconds(server.pid)
        run = subprocess.run(
            [
                wrk,
                f"-t{args.wrk_threads}",
                f"-c{args.connections}",
                f"-d{args.seconds}s",
                "--timeout",
                "5s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}/heartbeat",
                "--",
                str(tokens),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        cpu_used = cpu_seconds(server.pid) - cpu_before
    finally:
        stop(server)
    print(run.stdout.strip())
    match = re.search(r"^RESULT (.*)$", run.stdout, re.MULTILINE)
    if match is None:
        raise SystemExit("wrk printed no result")
    result = json.loads(match.group(1))
    landed = Runner.objects.filter(last_heartbeat_at__gte=started).count()
    seconds = result["duration_us"] / 1e6
    emit(
        {
            "requests_per_second": round(result["requests"] / seconds, 1),
            "p50_ms": round(result["p50_us"] / 1000, 2),
            "p99_ms": round(result["p99_us"] / 1000, 2),
            "errors": result["errors"],
            "p90_ms": round(result["p90_us"] / 1000, 2),
            "requests": result["requests"],
            "runners": args.runners,
            "runners_with_a_heartbeat": landed,
            # Contention-free cost: what one heartbeat costs the web server in CPU.
            "server_cpu_ms_per_request": round(1000 * cpu_used / result["requests"], 3),
            "connections": args.connections,
            "gunicorn": f"gthread {args.workers} workers x {args.threads} threads",
            "database": connection.vendor,
            "load_average_after": os.getloadavg()[0],
        }
    )


if __name__ == "__main__":
    main()
