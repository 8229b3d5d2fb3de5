"""The whole system as separate processes, for end-to-end benchmarks.

:class:`Stack` starts the GitHub simulator, gunicorn, Celery workers and Celery beat
on the database and ``VAR_DIR`` that its environment names, at default settings,
and wires them with ``manage.py demo``. Workers run in their own process groups so a
benchmark can SIGKILL one the way systemd stops a unit (every process of it at
once) and start it again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import ensure_database

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The queues a worker serves unless told otherwise: everything.
ALL_QUEUES = "deploys,health"


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


def call(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """One JSON request; returns the decoded answer (None when empty)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def post(url: str, body: Any = None) -> Any:
    return call(url, "POST", {} if body is None else body)


def wait_until(
    condition: Callable[[], Any], seconds: float, what: str, step: float = 0.2
) -> Any:
    """The first truthy value of ``condition()``; exits the benchmark on timeout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise SystemExit(f"bench: gave up waiting for {what}")


@contextmanager
def busy_processes(n: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``n`` processes that each keep a core busy until the block ends: the
    contention of a shared CI runner or a laptop compiling beside the stack."""
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)
    ]
    try:
        yield busy
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def prepare(prefix: str) -> tuple[Path, str, dict[str, str]]:
    """A scratch VAR_DIR, the database (``DATABASE_URL`` or SQLite in it), migrated,
    and the environment for the processes."""
    var_dir = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
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
    return var_dir, database_url, env


def setup_django(database_url: str) -> None:
    """Start Django in the benchmark's own process, on the stack's database."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()


class Stack:
    """The simulator, gunicorn, Celery workers and beat, as separate processes on
    the database and VAR_DIR that ``env`` names, wired by ``manage.py demo``.

    ``simulator_args`` are added to ``githubsim serve``; ``webhooks`` points the
    simulator's webhooks at gunicorn; ``workers`` maps each worker's name to the
    queues it serves; ``before_demo`` runs once the simulator answers, before the
    fleet is synced (e.g. to add runners).
    """

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        simulator_args: Sequence[str] = (),
        webhooks: bool = False,
        workers: dict[str, str] | None = None,
        worker_concurrency: int = 2,
        before_demo: Callable[[Stack], None] | None = None,
        loglevel: str = "WARNING",
    ) -> None:
        sim_port, web_port = free_port(), free_port()
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        self.web_url = f"http://127.0.0.1:{web_port}"
        self.env = {
            **env,
            "GITHUB_API_URL": self.sim_url,
            "GITHUB_TOKEN": "bench-token",
            "RUNNER_EXPORTER_URL_TEMPLATE": (
                f"{self.sim_url}/_sim/exporter/{{name}}/metrics"
            ),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log_path = log_path
        self.before_demo = before_demo
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopped = False
        simulator = [
            sys.executable,
            "-m",
            "githubsim",
            "serve",
            "--port",
            str(sim_port),
            "--demo",
            "--heartbeat-url",
            f"{self.web_url}/heartbeat",
            *simulator_args,
        ]
        if webhooks:
            simulator += ["--webhook-url", f"{self.web_url}/github/webhook"]
        self.commands: dict[str, list[str]] = {
            "simulator": simulator,
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
        }
        self.workers = list((workers or {"worker": ALL_QUEUES}).items())
        for name, queues in self.workers:
            self.commands[name] = [
                str(BIN / "celery"),
                "-A",
                "controlplane",
                "worker",
                "-Q",
                queues,
                "--concurrency",
                str(worker_concurrency),
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                loglevel,
            ]
        self.commands["beat"] = [
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
        ]

    def __enter__(self) -> Stack:
        self._log = self.log_path.open("wb")
        try:
            for name in self.commands:
                self.start(name)
            if not wait_for(f"{self.sim_url}/_sim/state", 30):
                raise RuntimeError("the simulator did not start")
            if not wait_for(f"{self.web_url}/healthz", 60):
                raise RuntimeError("gunicorn did not start")
            if self.before_demo is not None:
                self.before_demo(self)
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

    def start(self, name: str) -> None:
        if self.stopped:
            return
        # Own session: a SIGKILL to the group takes the worker's pool children too.
        self.procs[name] = subprocess.Popen(
            self.commands[name],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        """SIGKILL every process of ``name`` at once and reap it."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def sim(self, method: str, path: str, body: Any = None) -> Any:
        """Call the simulator's control API (or its GitHub API without faults)."""
        return call(self.sim_url + path, method, body)

    def kill_host(self, name: str) -> None:
        post(f"{self.sim_url}/_sim/runners/{name}/kill")

    def stop(self) -> None:
        self.stopped = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._log.close()
