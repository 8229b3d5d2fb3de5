"""Programs the end-to-end tests start, and how they start and stop them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CELERY = str(Path(sys.executable).with_name("celery"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def start(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [CELERY, "-A", "controlplane", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen[bytes], log_dir: Path) -> int:
    """SIGTERM (warm shutdown), then the exit code; a process that hangs fails the
    test with the logs in ``log_dir``."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text()}" for p in log_dir.glob("*.log")
        )
        pytest.fail(f"{process.args!r} did not stop within 30 s of SIGTERM\n{logs}")
