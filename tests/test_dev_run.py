"""``dev.py run`` itself, as a new user starts it, keeps running under CPU contention
while deploys are requested through the API, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench._processes import busy_processes, free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

BUSY = 2
# How long deploys keep being requested: several beat ticks, sweeps and syncs.
REQUESTING_SECONDS = 150
ROUND_SECONDS = 30


def api(url: str, token: str, body: Any = None, key: str = "") -> Any:
    request = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode()
    )
    request.add_header("Authorization", f"Token {token}")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Idempotency-Key", key)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def wait_for_output(path: Path, text: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        output = path.read_text(errors="replace")
        if text in output:
            return output
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} within {seconds} s:\n{output[-3000:]}")


def test_dev_run_keeps_everything_running_under_contention_while_deploying(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    web_port = free_port()
    env = {
        **process_env,
        "DEV_WEB_PORT": str(web_port),
        "DEV_SIMULATOR_PORT": str(free_port()),
    }
    web = f"http://127.0.0.1:{web_port}"
    output = tmp_path / "dev-run.out"
    with busy_processes(BUSY), output.open("wb") as sink:
        dev = subprocess.Popen(
            [sys.executable, "dev.py", "run"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_output(output, "the control plane is running", 240)
            token = subprocess.run(
                [sys.executable, "manage.py", "issuetoken", "admin"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            requested = []
            readiness = []
            started = time.monotonic()
            round_ = 0
            while time.monotonic() - started < REQUESTING_SECONDS:
                for environment in ("production", "staging"):
                    run = api(
                        f"{web}/api/v1/deploys/",
                        token,
                        {"environment": environment, "ref": "main"},
                        key=f"contention-{environment}-{round_}",
                    )
                    requested.append(run["id"])
                round_ += 1
                time.sleep(ROUND_SECONDS)
                readiness.append(get(f"{web}/readyz"))

            deadline = time.monotonic() + 300
            while True:
                runs = api(f"{web}/api/v1/deploys/?limit=100", token)["results"]
                mine = {r["id"]: r for r in runs if r["id"] in requested}
                states = {r["state"] for r in mine.values()}
                if states <= {"succeeded", "failed", "cancelled"}:
                    break
                assert time.monotonic() < deadline, mine
                time.sleep(2)
            readiness.append(get(f"{web}/readyz"))
            alive = dev.poll() is None
        finally:
            if dev.poll() is None:
                dev.send_signal(signal.SIGINT)
            try:
                dev.wait(60)
            except subprocess.TimeoutExpired:
                dev.kill()

    log = output.read_text(errors="replace")
    assert alive, log[-5000:]
    lines = log.splitlines()
    # dev.py restarted something: the loud line and the error it printed below it.
    exits = [i for i, line in enumerate(lines) if "EXITED" in line]
    assert not exits, "\n".join(lines[max(0, exits[0] - 5) : exits[0] + 30])
    assert len(mine) == len(requested) >= 2 * (REQUESTING_SECONDS // ROUND_SECONDS)
    assert {r["state"] for r in mine.values()} == {"succeeded"}, mine
    # Beat, the worker and the health sweep kept within their bounds at every look.
    assert [r["status"] for r in readiness] == ["ok"] * len(readiness), readiness
    assert dev.returncode == 0, log[-3000:]
    assert "dev.py: stopping" in log
    for name in ("simulator", "web", "worker", "beat"):
        assert (Path(env["VAR_DIR"]) / "log" / f"{name}.log").stat().st_size > 0
