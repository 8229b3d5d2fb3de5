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
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VAR = Path(os.environ.get("VAR_DIR", ROOT / "var"))
LOG_DIR = VAR / "log"
BIN = VENV / "bin"
PYTHON = BIN / "python"
# Other ports let a second copy (or a test) run beside the usual one.
WEB_PORT = int(os.environ.get("DEV_WEB_PORT", "8000"))
WEB_URL = f"http://127.0.0.1:{WEB_PORT}"
DEFAULT_SIMULATOR_PORT = 9100
SIMULATOR_PORT = int(os.environ.get("DEV_SIMULATOR_PORT", DEFAULT_SIMULATOR_PORT))
DEMO_ADMIN = "admin"
# A second user, an SRE: deploys that need another SRE's approval can be approved (no
# one approves their own), and the demo's deploy awaiting approval is requested by
# this user, so the admin can approve it.
DEMO_SRE = "sre"
# The demo fleet's intended inventory, drifting from the simulator's fleet on purpose.
DEMO_INVENTORY = ROOT / "inventory" / "demo-hosts.ini"
# A process that exits this often within the window is broken, not unlucky: stop.
RESTART_LIMIT = 5
RESTART_WINDOW = 60.0
BACKOFF_MAX = 30.0
TAIL_LINES = 200
ERROR_LINES = 25
TRACEBACK = "Traceback (most recent call last):"
OUTPUT_LOCK = threading.Lock()


def log(message: str) -> None:
    # The lock keeps the line whole among the children's output (Process).
    with OUTPUT_LOCK:
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
    if requirements == "requirements.txt" and _dev_requirements_current():
        return  # requirements-dev.txt includes requirements.txt
    log(f"installing {requirements} into .venv")
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-r", str(ROOT / requirements)], check=True)
    stamp.write_text(digest.hexdigest())


def _dev_requirements_current() -> bool:
    stamp = VENV / ".installed-requirements-dev.txt"
    digest = hashlib.sha256()
    for name in ("requirements.txt", "requirements-dev.txt"):
        digest.update((ROOT / name).read_bytes())
    return stamp.exists() and stamp.read_text() == digest.hexdigest()


def manage(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> None:
    subprocess.run(
        [str(PYTHON), "manage.py", *args],
        cwd=ROOT,
        check=True,
        env=env,
        input=stdin.encode(),
    )


def demo_password(username: str) -> str:
    """A demo user's password: made once, kept in var/ so every run can print it."""
    path = VAR / f"demo-{username}-password"
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
    """Migrate, create the demo admin, then start and watch simulator, web, worker
    and beat (restarting any that exits), and load the demo."""
    ensure_venv("requirements.txt")
    VAR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VAR_DIR": str(VAR)}
    simulator = f"http://127.0.0.1:{SIMULATOR_PORT}"
    if SIMULATOR_PORT != DEFAULT_SIMULATOR_PORT:
        # Settings assume the simulator on its default port; point them at this one.
        env.setdefault("GITHUB_API_URL", simulator)
        env.setdefault("GITHUB_TOKEN", "githubsim-token")
        env.setdefault(
            "RUNNER_EXPORTER_URL_TEMPLATE",
            f"{simulator}/_sim/exporter/{{name}}/metrics",
        )
    # The inventory page and the home board hold the registry against it; beat
    # re-reads the file when it changes.
    env.setdefault("INVENTORY_PATH", str(DEMO_INVENTORY))
    manage("migrate", "--noinput", "-v0", env=env)
    passwords: dict[str, str] = {}
    for username, role in ((DEMO_ADMIN, "admin"), (DEMO_SRE, "sre")):
        passwords[username] = demo_password(username)
        manage(
            "createuser",
            username,
            "--role",
            role,
            "--password-stdin",
            "--if-missing",
            env=env,
            stdin=passwords[username],
        )
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
            f"127.0.0.1:{WEB_PORT}",
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
    procs = {name: Process(name, command, env) for name, command in commands.items()}

    def load_demo() -> None:
        manage("demo", "--simulator", simulator, "--history", env=env)

    take_stop_signals()
    try:
        for proc in procs.values():
            proc.start()
            if proc.name == "simulator" and not wait_for(f"{simulator}/_sim/state", 30):
                give_up(procs, proc, "the GitHub simulator did not start")
        if not wait_for(f"{WEB_URL}/healthz", 60):
            give_up(procs, procs["web"], "the web server did not start")
        try:
            load_demo()
        except subprocess.CalledProcessError as exc:
            stop_all(procs)
            sys.exit(f"dev.py: manage.py demo failed with code {exc.returncode}")
        log(f"the control plane is running at {WEB_URL}/")
        log(f"log in as {DEMO_ADMIN!r} with password {passwords[DEMO_ADMIN]!r}")
        log(
            f"or as the SRE {DEMO_SRE!r} with password {passwords[DEMO_SRE]!r} "
            "(approvals need an SRE other than the requester)"
        )
        log(f"break a runner: {PYTHON} -m githubsim ctl kill prod-primary-1")
        log(f"each process logs to {LOG_DIR}/<name>.log")
        log("press Ctrl-C to stop everything")
        supervise(procs, {"simulator": load_demo})
    except KeyboardInterrupt:
        log("stopping")
    finally:
        # A second Ctrl-C while the children stop would leave them running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_all(procs)


def take_stop_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM (systemd, docker, kill) stop everything, even
    when this was started ignoring or blocking them, as a shell's background job
    (``dev.py run &`` ignores SIGINT) or a test harness's child may be."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


class Process:
    """One supervised child: its output goes to ``var/log/<name>.log`` and, prefixed
    with its name, to the terminal; the newest lines are kept for error reports."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = LOG_DIR / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.pump: threading.Thread | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.exits: deque[float] = deque()
        self.restart_at: float | None = None

    def start(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.tail.clear()
        self.restart_at = None
        # Own session: Ctrl-C reaches dev.py only, which stops the children in
        # order, and kill() reaches every process of the child (pool workers).
        self.popen = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pump = threading.Thread(target=self._copy_output, daemon=True)
        self.pump.start()
        log(f"{self.name} started (pid {self.popen.pid}, log {self.log_path})")

    def _copy_output(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        prefix = f"{self.name:<9} | ".encode()
        with self.log_path.open("ab") as logfile:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            logfile.write(f"--- dev.py: {self.name} started at {stamp} ---\n".encode())
            for line in self.popen.stdout:
                logfile.write(line)
                logfile.flush()
                self.tail.append(line.decode(errors="replace").rstrip())
                with OUTPUT_LOCK:
                    sys.stdout.buffer.write(prefix + line)
                    sys.stdout.buffer.flush()

    def exit_code(self) -> int | None:
        """None while it runs."""
        return None if self.popen is None else self.popen.poll()

    def stop(self) -> None:
        """Ask it to stop: the main process only, which stops its own children
        (Celery's pool, gunicorn's workers) in order."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()

    def kill(self) -> None:
        """Kill every process of it at once, as systemd does after its timeout."""
        if self.popen is not None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, seconds: float) -> None:
        if self.popen is None:
            return
        try:
            self.popen.wait(max(0.1, seconds))
        except subprocess.TimeoutExpired:
            self.kill()
            self.popen.wait()
        if self.pump is not None:
            self.pump.join(5)

    def error_lines(self) -> list[str]:
        """The lines that most likely say why it stopped: its last traceback, with
        the log line announcing it and up to the exception it ends with (other
        processes of it may log on after it); else its last few lines."""
        lines = list(self.tail)
        tracebacks = [i for i, line in enumerate(lines) if TRACEBACK in line]
        if not tracebacks:
            return lines[-ERROR_LINES:]
        header = tracebacks[-1]
        # The frames are indented; the first line after them that is not names the
        # exception.
        end = next(
            (
                i
                for i in range(header + 1, len(lines))
                if lines[i] and not lines[i][0].isspace()
            ),
            len(lines) - 1,
        )
        excerpt = lines[max(0, header - 1) : end + 1]
        if len(excerpt) > ERROR_LINES:
            excerpt = [*excerpt[:2], "  ...", *excerpt[-(ERROR_LINES - 3) :]]
        return excerpt


def supervise(
    procs: dict[str, Process], after_restart: dict[str, Callable[[], None]]
) -> None:
    """Restart each process that exits, with a growing back-off, as systemd or
    compose would; stop everything when one exits RESTART_LIMIT times within
    RESTART_WINDOW seconds. ``after_restart[name]`` runs once ``name`` is back."""
    while True:
        time.sleep(0.5)
        now = time.monotonic()
        for proc in procs.values():
            if proc.restart_at is not None:
                if now >= proc.restart_at:
                    proc.start()
                    if hook := after_restart.get(proc.name):
                        restart_hook(proc, hook)
                continue
            code = proc.exit_code()
            if code is None:
                continue
            # Its children may outlive it (a killed worker's pool): clear them, as
            # systemd clears a unit's cgroup, and let its last lines reach the log.
            proc.kill()
            proc.wait(1)
            proc.exits.append(now)
            while proc.exits and proc.exits[0] < now - RESTART_WINDOW:
                proc.exits.popleft()
            if len(proc.exits) >= RESTART_LIMIT:
                give_up(
                    procs,
                    proc,
                    f"{proc.name} exited {len(proc.exits)} times within "
                    f"{RESTART_WINDOW:.0f} s (last exit code {code})",
                )
            delay = min(BACKOFF_MAX, 2.0 ** (len(proc.exits) - 1))
            log(
                f"{proc.name.upper()} EXITED with code {code}; restarting in "
                f"{delay:.0f} s (see {proc.log_path})"
            )
            for line in proc.error_lines():
                log(f"    {line}")
            proc.restart_at = now + delay


def restart_hook(proc: Process, hook: Callable[[], None]) -> None:
    """Run ``hook`` after ``proc`` came back; a failure is reported, not fatal (the
    process itself may be dying again, which the supervisor handles)."""
    if proc.name == "simulator" and not wait_for(
        f"http://127.0.0.1:{SIMULATOR_PORT}/_sim/state", 30
    ):
        return
    try:
        hook()
    except subprocess.CalledProcessError as exc:
        log(f"after restarting {proc.name}: {exc}")


def stop_all(procs: dict[str, Process]) -> None:
    for proc in procs.values():
        proc.stop()
    deadline = time.monotonic() + 15
    for proc in procs.values():
        proc.wait(deadline - time.monotonic())


def give_up(procs: dict[str, Process], culprit: Process, why: str) -> NoReturn:
    """Stop everything, then make the last lines on the terminal say which process,
    why, and where its full log is."""
    stop_all(procs)
    log(f"{why}; everything is stopped")
    log(f"the last lines of {culprit.name}'s output:")
    for line in culprit.error_lines() or ["(no output)"]:
        log(f"    {line}")
    sys.exit(f"dev.py: {culprit.name} failed: {why}; full log: {culprit.log_path}")


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
