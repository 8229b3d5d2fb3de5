"""``dev.py run``'s supervisor: restarts what exits, gives up loudly on what keeps
exiting. Real child processes (small Python scripts), no Django."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import dev  # noqa: E402 - dev.py is a script at the top of the repository

# A worker's death as Celery logs it: the announcement, a traceback, and a line from
# one of its pool processes after it.
CRASH = """
import sys, traceback
print("starting")
def consume():
    raise RuntimeError("broker gone")
try:
    consume()
except RuntimeError:
    print("CRITICAL celery.worker Unrecoverable error: RuntimeError('broker gone')")
    traceback.print_exc(file=sys.stdout)
print("INFO a pool process finished its task")
sys.exit(3)
"""
COUNTER = """
import pathlib, sys, time
path = pathlib.Path(sys.argv[1])
runs = int(path.read_text()) + 1 if path.exists() else 1
path.write_text(str(runs))
print(f"run {runs}", flush=True)
if runs == 1:
    sys.exit(7)
time.sleep(60)
"""


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Logs in tmp_path and no back-off wait, so a test takes a second or two."""
    monkeypatch.setattr(dev, "LOG_DIR", tmp_path)
    monkeypatch.setattr(dev, "BACKOFF_MAX", 0.0)
    return tmp_path


def process(name: str, *args: str) -> dev.Process:
    return dev.Process(name, [sys.executable, "-c", *args], {"PYTHONUNBUFFERED": "1"})


def test_a_process_that_keeps_exiting_stops_everything_naming_it_and_its_error(
    fast: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crashing = process("worker", CRASH)
    healthy = process("web", "import time; time.sleep(60)")
    procs = {"web": healthy, "worker": crashing}
    for proc in procs.values():
        proc.start()

    with pytest.raises(SystemExit) as stopped:
        dev.supervise(procs, {})

    assert str(stopped.value) == (
        f"dev.py: worker failed: worker exited {dev.RESTART_LIMIT} times within 60 s "
        f"(last exit code 3); full log: {fast / 'worker.log'}"
    )
    out = capsys.readouterr().out
    assert "dev.py: WORKER EXITED with code 3; restarting in 0 s" in out
    # The error comes last, after everything else stopped: the announcement, the
    # traceback and its exception, not what was logged after it.
    tail = out[out.rindex("everything is stopped") :].splitlines()[2:]
    assert tail[:2] == [
        "dev.py:     CRITICAL celery.worker Unrecoverable error: "
        "RuntimeError('broker gone')",
        "dev.py:     Traceback (most recent call last):",
    ]
    assert tail[-1] == "dev.py:     RuntimeError: broker gone"
    assert healthy.exit_code() is not None  # stopped with the rest
    log = (fast / "worker.log").read_text()
    assert log.count("RuntimeError: broker gone") == dev.RESTART_LIMIT
    assert log.count("--- dev.py: worker started at") == dev.RESTART_LIMIT


def test_an_exited_process_is_restarted_and_the_hook_runs(
    fast: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = fast / "runs"
    proc = dev.Process(
        "beat",
        [sys.executable, "-c", COUNTER, str(counter)],
        {"PYTHONUNBUFFERED": "1"},
    )
    hooks: list[str] = []

    def after_restart() -> None:
        hooks.append("beat")
        raise KeyboardInterrupt  # ends supervise() the way Ctrl-C does

    proc.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            dev.supervise({"beat": proc}, {"beat": after_restart})
        assert hooks == ["beat"]
        deadline = time.monotonic() + 30
        while "run 2" not in proc.tail and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(proc.tail) == ["run 2"]  # the tail is the current run's
        assert proc.exit_code() is None  # the second run is up
        assert len(proc.exits) == 1
    finally:
        dev.stop_all({"beat": proc})
    assert proc.exit_code() is not None


STOPPABLE = f"""
import signal, sys, time
sys.path.insert(0, {str(ROOT)!r})
import dev
dev.take_stop_signals()
try:
    print("ready", flush=True)  # the signal may land before the print returns
    time.sleep(60)
except KeyboardInterrupt:
    print("stopping", flush=True)
"""


@pytest.mark.parametrize("how", ["ignored", "blocked"])
def test_ctrl_c_stops_it_even_when_started_ignoring_or_blocking_it(how: str) -> None:
    """As a shell's background job (SIGINT ignored) or a harness's child (blocked)."""

    def inherit() -> None:
        if how == "ignored":
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    child = subprocess.Popen(
        [sys.executable, "-c", STOPPABLE],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=inherit,  # noqa: PLW1509 - sets what the child inherits, no threads
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGINT)
        assert child.stdout.readline().strip() == "stopping"
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.wait()
