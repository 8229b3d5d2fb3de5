"""bench.deploy_faults, small: deploys under GitHub faults and worker SIGKILLs all end
terminal, none dispatched twice, none shipping another commit than the one requested
while main moves, while workers really were killed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_deploys_under_faults_and_worker_kills_end_terminal_without_duplicates(
    process_env: dict[str, str],
) -> None:
    env = dict(process_env)
    # A broker of its own (the filesystem one in the bench's VAR_DIR): workers on a
    # shared Redis would take other tests' messages.
    env.pop("CELERY_BROKER_URL", None)
    # A dispatch whose answer was lost (an injected 5xx) is looked up for this long
    # before a new attempt replaces it; the simulator lists runs at once.
    env["DEPLOY_DISPATCH_LOOKUP_GRACE"] = "10"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.deploy_faults",
            "--deploys",
            "8",
            "--environments",
            "2",
            "--kill-every",
            "10",
            "--timeout",
            "300",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result))
    assert result["deploys"] == 8
    assert (result["terminal"], result["stuck"]) == (8, 0), result
    assert result["duplicate_dispatches"] == 0, result
    assert result["foreign_runs"] == 0, result
    # Beside the deploys, only canaries ran (beat sends them to idle pools).
    assert set(result["other_runs"]) <= {"Runner canary"}, result
    # Every deploy that succeeded ran on GitHub; one that did not says why (three
    # dispatches in a row lost to injected 5xx is a legitimate max_attempts).
    succeeded = result["states"].get("succeeded", 0)
    assert result["github_runs"] >= succeeded >= 1, result
    assert sum(result["failed_reasons"].values()) == 8 - succeeded, result
    assert "" not in result["failed_reasons"], result
    # main moved during the run, and every succeeded deploy shipped its recorded SHA.
    assert result["pushes"] >= 1, result
    assert result["wrong_sha"] == 0, result
    assert "wrong_sha" not in result["failed_reasons"], result
    # Workers really died meanwhile.
    assert result["worker_kills"] >= 1, result
