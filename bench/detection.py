"""Dead-host detection end to end: seconds from a host's last heartbeat to unhealthy.

    python -m bench.detection
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_detection \\
        python -m bench.detection

Starts, as separate processes at default settings, the GitHub simulator (demo
fleet, heartbeating to the control plane), gunicorn, a Celery worker and Celery
beat on a fresh database and broker, wires them with ``manage.py demo`` and waits
for the fleet to turn healthy. Then the simulator kills several runner hosts at
once; for each, the time from its last recorded heartbeat to the health sweep's
``unhealthy`` transition is measured. ``detection_seconds`` is the slowest.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench import emit, ensure_database

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VICTIMS = ("prod-primary-1", "staging-1", "build-1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    return False


def post(url: str) -> None:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10):
        pass


def wait_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise SystemExit(f"bench.detection: gave up waiting for {what}")


class Stack:
    """The simulator, gunicorn, a Celery worker and beat, as separate processes on
    the database and VAR_DIR that ``env`` names, wired by ``manage.py demo``."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        sim_port, web_port = free_port(), free_port()
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        self.web_url = f"http://127.0.0.1:{web_port}"
        self.env = {
            **env,
            "GITHUB_API_URL": self.sim_url,
            "GITHUB_TOKEN": "bench-detection-token",
            "RUNNER_EXPORTER_URL_TEMPLATE": (
                f"{self.sim_url}/_sim/exporter/{{name}}/metrics"
            ),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log_path = log_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.commands = {
            "simulator": [
                sys.executable,
                "-m",
                "githubsim",
                "serve",
                "--port",
                str(sim_port),
                "--demo",
                "--heartbeat-url",
                f"{self.web_url}/heartbeat",
            ],
            "web": [
                str(BIN / "gunicorn"),
                "controlplane.wsgi",
                "--bind",
                f"127.0.0.1:{web_port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--worker-class",
                "gthread",
            ],
            "worker": [
                str(BIN / "celery"),
                "-A",
                "controlplane",
                "worker",
                "-Q",
                "deploys,health",
                "--concurrency",
                "2",
                "--loglevel",
                "WARNING",
            ],
            "beat": [
                str(BIN / "celery"),
                "-A",
                "controlplane",
                "beat",
                "--loglevel",
                "WARNING",
                "--pidfile",
                "",
                "--schedule",
                str(log_path.parent / "beat-schedule"),
            ],
        }

    def __enter__(self) -> Stack:
        self._log = self.log_path.open("wb")
        try:
            for name, command in self.commands.items():
                self.procs[name] = subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=self.env,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                )
            if not wait_for(f"{self.sim_url}/_sim/state", 30):
                raise RuntimeError("the simulator did not start")
            if not wait_for(f"{self.web_url}/healthz", 60):
                raise RuntimeError("gunicorn did not start")
            subprocess.run(
                [sys.executable, "manage.py", "demo", "--simulator", self.sim_url],
                cwd=ROOT,
                env=self.env,
                check=True,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill_host(self, name: str) -> None:
        post(f"{self.sim_url}/_sim/runners/{name}/kill")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="bench-detection-"))
    database_url = os.environ.get(
        "DATABASE_URL", f"sqlite:///{var_dir / 'controlplane.sqlite3'}"
    )
    ensure_database(database_url)
    env = {**os.environ, "DATABASE_URL": database_url, "VAR_DIR": str(var_dir)}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    with Stack(env, var_dir / "processes.log") as stack:
        result = measure(database_url, stack, args.timeout)
    print(f"process logs: {var_dir / 'processes.log'}", flush=True)
    emit(result)


def measure(database_url: str, stack: Stack, timeout: float) -> dict[str, Any]:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import close_old_connections

    from controlplane.models import TaskStatus
    from runners.models import Runner, RunnerEvent, State

    def healthy() -> bool:
        close_old_connections()
        return Runner.objects.filter(name__in=VICTIMS, state=State.HEALTHY).count() == 3

    wait_until(healthy, timeout, "the demo runners to turn healthy")
    killed_at = time.time()
    for name in VICTIMS:
        stack.kill_host(name)

    def detected() -> bool:
        close_old_connections()
        return (
            RunnerEvent.objects.filter(
                runner__name__in=VICTIMS,
                kind=RunnerEvent.Kind.STATE_CHANGE,
                to_state=State.UNHEALTHY,
            ).count()
            == 3
        )

    wait_until(detected, timeout, "the killed runners to turn unhealthy")
    samples = []
    for name in VICTIMS:
        runner = Runner.objects.get(name=name)
        event = runner.events.get(
            kind=RunnerEvent.Kind.STATE_CHANGE, to_state=State.UNHEALTHY
        )
        assert runner.last_heartbeat_at is not None
        since_heartbeat = (event.created_at - runner.last_heartbeat_at).total_seconds()
        since_kill = event.created_at.timestamp() - killed_at
        samples.append((name, since_heartbeat, since_kill, event.reason))
        print(
            f"{name}: unhealthy ({event.reason}) {since_heartbeat:.1f} s after its "
            f"last heartbeat, {since_kill:.1f} s after the kill",
            flush=True,
        )
    bound = (
        settings.HEARTBEAT_STALE_AFTER
        + settings.HEALTH_FALL_AFTER * settings.HEALTH_SWEEP_INTERVAL
    )
    return {
        "detection_seconds": round(max(s[1] for s in samples), 2),
        "detection_seconds_each": [round(s[1], 2) for s in samples],
        "seconds_after_kill": [round(s[2], 2) for s in samples],
        "reasons": [s[3] for s in samples],
        "design_bound_seconds": bound,
        "database": database_url.split(":", 1)[0],
        # Periodic jobs the real worker ran successfully meanwhile.
        "tasks_succeeded": sorted(
            TaskStatus.objects.filter(last_success_at__isnull=False).values_list(
                "name", flat=True
            )
        ),
    }


if __name__ == "__main__":
    main()
