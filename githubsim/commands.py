"""Commands a workflow's self-hosted jobs run: the real script in place of the steps.

By default the simulator does not run steps: a job lasts its duration and ends with
its outcome. A workflow may instead be given a command (control API ``PUT
/_sim/repos/{owner}/{repo}/workflows/{file}/command``); each of its jobs on a
self-hosted runner then runs that command when it starts, in a thread outside the
state lock, and ends when the command exits: ``success`` on exit 0, ``failure``
otherwise or when it outlives its ``timeout`` (real seconds).

The command's environment is what a workflow step would see:

- ``RUNNER_NAME``, ``GITHUB_RUN_ID``, ``GITHUB_API_URL`` (this simulator), ``PATH``;
- ``HOST_ROOT``: ``<hosts_dir>/<runner name>`` when ``hosts_dir`` is set, a fake
  host root per runner (stub ``/proc`` files, the runner's directory and logs);
- ``env`` as given, each value with ``${{ inputs.NAME }}`` resolved from the dispatch
  inputs and ``${{ secrets.RUNNER_HEARTBEAT_TOKEN }}`` from the runner's heartbeat
  token (the per-runner GitHub environment secret the shipped workflows read).

The last lines of its output become the job's note (control API), as a step log.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Callable, Mapping
from typing import Any

from githubsim.errors import ApiError
from githubsim.models import Command, Job, Run
from githubsim.workflows import resolve

# Called with (job id, conclusion, note) when the command has exited.
Finish = Callable[[int, str, str], None]

SECRET = re.compile(r"\$\{\{\s*secrets\.RUNNER_HEARTBEAT_TOKEN\s*\}\}")
NOTE_CHARS = 2000


def parse_command(body: Mapping[str, Any]) -> Command:
    """``{"argv": [...], "env": {...}, "hosts_dir": "...", "timeout": seconds}``."""
    unknown = sorted(set(body) - {"argv", "env", "hosts_dir", "timeout"})
    if unknown:
        raise ApiError(422, f"unknown fields {unknown}: argv, env, hosts_dir, timeout")
    argv = body.get("argv")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ApiError(422, "argv must be a non-empty list of strings")
    env = body.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ApiError(422, "env must be an object of strings")
    hosts_dir = body.get("hosts_dir")
    if hosts_dir is not None and not isinstance(hosts_dir, str):
        raise ApiError(422, "hosts_dir must be a folder path")
    timeout = body.get("timeout", 120.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ApiError(422, "timeout must be a number of seconds")
    if not 0 < timeout <= 3600:
        raise ApiError(422, "timeout must be between 0 and 3600 seconds")
    return Command(list(argv), dict(env), hosts_dir, float(timeout))


def environment(
    command: Command, job: Job, run: Run, api_url: str, heartbeat_token: str | None
) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "RUNNER_NAME": job.runner_name or "",
        "GITHUB_RUN_ID": str(run.id),
        "GITHUB_API_URL": api_url,
    }
    if command.hosts_dir:
        env["HOST_ROOT"] = os.path.join(command.hosts_dir, job.runner_name or "")
    for name, value in command.env.items():
        value = SECRET.sub(lambda _: heartbeat_token or "", value)
        env[name] = resolve(value, run.inputs)
    return env


def launch(command: Command, env: dict[str, str], job_id: int, finish: Finish) -> None:
    """Run ``command`` in a thread; ``finish`` ends the job when it exits."""
    thread = threading.Thread(
        target=_run,
        args=(command, env, job_id, finish),
        name=f"githubsim-job-{job_id}",
        daemon=True,
    )
    thread.start()


def _run(command: Command, env: dict[str, str], job_id: int, finish: Finish) -> None:
    try:
        done = subprocess.run(
            command.argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=command.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        conclusion, note = "failure", f"command timed out after {command.timeout} s"
    except OSError as exc:
        conclusion, note = "failure", f"command could not start: {exc}"
    else:
        conclusion = "success" if done.returncode == 0 else "failure"
        output = (done.stdout + done.stderr).strip()
        note = f"exit {done.returncode}: {output[-NOTE_CHARS:]}"
    finish(job_id, conclusion, note)
