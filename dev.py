#!/usr/bin/env python3
"""Set up and run the control plane on a machine that has only Python 3.11+.

    python3 dev.py run    # the control plane, its worker, beat and the GitHub simulator
    python3 dev.py test   # the whole test suite (extra arguments go to pytest)

Both create ``.venv`` and install the pinned requirements the first time (and again
whenever a requirements file changes). Standard library only: this runs before any
dependency is installed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VAR = ROOT / "var"
BIN = VENV / "bin"
PYTHON = BIN / "python"
WEB_URL = "http://127.0.0.1:8000"
SIMULATOR_PORT = 9100
DEMO_ADMIN = "admin"


def log(message: str) -> None:
    print(f"dev.py: {message}", flush=True)


def ensure_venv(requirements: str) -> None:
    """Create the virtualenv and install ``requirements`` unless already done."""
    if sys.version_info < (3, 11):  # noqa: UP036 - runs before the venv exists
        sys.exit("dev.py: Python 3.11 or newer is needed")
    if not PYTHON.exists():
        log("creating .venv")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    digest = hashlib.sha256()
    for name in ("requirements.txt", requirements):
        digest.update((ROOT / name).read_bytes())
    stamp = VENV / f".installed-{requirements}"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return
    log(f"installing {requirements} into .venv")
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-r", str(ROOT / requirements)], check=True)
    stamp.write_text(digest.hexdigest())


def manage(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> None:
    subprocess.run(
        [str(PYTHON), "manage.py", *args],
        cwd=ROOT,
        check=True,
        env=env,
        input=stdin.encode(),
    )


def demo_admin_password() -> str:
    """The demo admin's password: made once, kept in var/ so every run can print it."""
    path = VAR / "demo-admin-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


def wait_for(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    return False


def run() -> None:
    """Migrate, create the demo admin, start simulator, web, worker and beat."""
    ensure_venv("requirements.txt")
    VAR.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    manage("migrate", "--noinput", "-v0", env=env)
    password = demo_admin_password()
    manage(
        "createuser",
        DEMO_ADMIN,
        "--role",
        "admin",
        "--password-stdin",
        "--if-missing",
        env=env,
        stdin=password,
    )
    simulator = f"http://127.0.0.1:{SIMULATOR_PORT}"
    commands = {
        "simulator": [
            str(PYTHON),
            "-m",
            "githubsim",
            "serve",
            "--port",
            str(SIMULATOR_PORT),
            "--demo",
            "--webhook-url",
            f"{WEB_URL}/github/webhook",
            "--heartbeat-url",
            f"{WEB_URL}/heartbeat",
        ],
        "web": [
            str(BIN / "gunicorn"),
            "controlplane.wsgi",
            "--bind",
            "127.0.0.1:8000",
            "--workers",
            "2",
            "--threads",
            "4",
            "--worker-class",
            "gthread",
            "--access-logfile",
            "-",
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
            "INFO",
        ],
        "beat": [
            str(BIN / "celery"),
            "-A",
            "controlplane",
            "beat",
            "--loglevel",
            "INFO",
            "--pidfile",
            "",
        ],
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def stop(*_: object) -> None:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for name, command in commands.items():
            procs[name] = subprocess.Popen(command, cwd=ROOT, env=env)
            if name == "simulator" and not wait_for(f"{simulator}/_sim/state", 15):
                sys.exit("dev.py: the GitHub simulator did not start")
        if not wait_for(f"{WEB_URL}/healthz", 30):
            sys.exit("dev.py: the web server did not start")
        manage("demo", "--simulator", simulator, env=env)
        log(f"the control plane is running at {WEB_URL}/")
        log(f"log in as {DEMO_ADMIN!r} with password {password!r}")
        log(f"break a runner: {PYTHON} -m githubsim ctl kill prod-primary-1")
        log("press Ctrl-C to stop everything")
        while all(proc.poll() is None for proc in procs.values()):
            time.sleep(0.5)
        dead = [name for name, proc in procs.items() if proc.poll() is not None]
        sys.exit(f"dev.py: {', '.join(dead)} stopped; stopping the rest")
    except KeyboardInterrupt:
        log("stopping")
    finally:
        stop()


def test(args: list[str]) -> int:
    ensure_venv("requirements-dev.txt")
    # One pytest worker per core; pass -n 0 to run in one process.
    command = [str(BIN / "pytest"), "-n", "auto", *args]
    return subprocess.run(command, cwd=ROOT).returncode


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test"}:
        sys.exit(__doc__)
    os.chdir(ROOT)
    if sys.argv[1] == "run":
        run()
    else:
        sys.exit(test(sys.argv[2:]))


if __name__ == "__main__":
    main()
