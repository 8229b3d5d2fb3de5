"""Deploys under faults: GitHub failing 20% of calls and workers SIGKILLed at random.

    python -m bench.deploy_faults --deploys 100
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_deploy_faults \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/14 \\
        python -m bench.deploy_faults --deploys 100

Starts the simulator (sped up, webhooks to the control plane), gunicorn, two deploy
workers, a health worker and beat at default settings (see :mod:`bench._processes`),
with ``--environments`` environments of two runners each. Then:

1. The simulator answers ``--fault-rate`` of GitHub API calls with a fault: half
   5xx (502/503), half rate limits (403 secondary limit and 429, with
   ``retry-after``).
2. ``--deploys`` deploys are requested through ``POST /api/v1/deploys/``, spread
   over the environments (each runs its deploys one at a time, in order).
3. Meanwhile a deploy worker, chosen at random, is SIGKILLed (all its processes at
   once) every 1 to ``--kill-every`` seconds and started again half a second later,
   as systemd would.
4. Once every deploy is terminal (or ``--timeout`` passed), faults stop and the
   simulator's record of dispatches is counted per correlation token.

Meanwhile, too, a commit is pushed to ``main`` every 0.5 to ``--push-every`` seconds,
so branches move between a deploy's request (which resolves ``main`` to its SHA),
its dispatch and its checkout.

The environments take turns at four shapes (:data:`SHAPES`), the shipped reference
workflows loaded into the simulator: the multi-job ``deploy-pipeline.yml`` (build on
a GitHub-hosted runner, deploy on the pinned runner, smoke test) whose GitHub
environment has a required reviewer, approved through the control plane's review
API by an SRE thread (:class:`Approver`) once the deploy says it is held; the
single-job ``deploy.yml`` behind a one-minute wait timer; and each of the two
without protection rules.

The shipped canary workflow is loaded too: beat sends canaries to the pool runners
of environments that are not deploying, as in production. Runs are told apart by
their workflow: ``foreign_runs`` counts deploy-workflow runs whose token belongs to
no attempt; ``other_runs`` counts the runs of every other workflow (the canaries).

``duplicate_dispatches`` counts workflow runs GitHub created beyond the first for a
token (the engine must send each attempt's dispatch at most once, across crashes);
``stuck`` counts deploys still not terminal at the end. ``wrong_sha`` counts
succeeded deploys that did not ship the commit they recorded at request time: no
SHA recorded, or their GitHub run checked out another one (the run's ``head_sha``
when the workflow ignores the ``sha`` input). ``head_moved`` counts succeeded
deploys whose run's ``head_sha`` differs from the requested SHA (the branch moved
before the dispatch) yet checked out the requested commit, as they must.

The simulator runs ``--time-scale`` times faster than real time: its jobs, pickup
delays and ``retry-after`` hints are in simulated seconds, and its hosts heartbeat
every 10 real seconds as the control plane expects. Its hints are relative
(``retry-after``) so they mean the same on both clocks; a primary rate limit's
absolute ``x-ratelimit-reset`` would be hours ahead of the control plane's clock
on a sped-up simulator, so it is not among the injected faults.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import threading
import time
import urllib.error
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from bench import emit
from bench._processes import Stack, call, prepare, setup_django, wait_until

REPOSITORY = "acme/deploy"
TOKEN_RE = re.compile(r"\[([^\]]*)\]$")
DEPLOY_WORKERS = ("deploys-1", "deploys-2")
# GitHub's usual secondary-limit hint, in simulated seconds.
RETRY_AFTER = 60.0
RESTART_DELAY = 0.5
# How often a request answered 503 (GitHub down while resolving the ref) or 409 (the
# key's first try still in flight) is retried with the same Idempotency-Key.
REQUEST_RETRIES = 30


# (workflow file, protection rule of the GitHub environment) by environment index.
SHAPES = (
    ("deploy-pipeline.yml", "reviewers"),
    ("deploy.yml", "wait_timer"),
    ("deploy-pipeline.yml", ""),
    ("deploy.yml", ""),
)
WORKFLOWS = Path(__file__).resolve().parent.parent / "deploys" / "workflows"
CANARY_WORKFLOW = (
    Path(__file__).resolve().parent.parent / "diagnostics/workflows/runner-canary.yml"
)
# The simulator's own user (the control plane's token): the required reviewer.
REVIEWER_ID = 9_000_001


def shape(index: int) -> tuple[str, str]:
    return SHAPES[index % len(SHAPES)]


def runner_names(index: int) -> tuple[str, str]:
    return f"fz-{index}-a", f"fz-{index}-b"


class Killer(threading.Thread):
    """SIGKILLs a random deploy worker every 1 to ``every`` seconds and, like
    systemd's ``Restart=always``, starts again any worker that is not running
    (killed here, or exited on its own: ``crashes``)."""

    def __init__(self, stack: Stack, every: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.every = every
        self.random = random.Random(seed)
        self.kills = 0
        self.crashes = 0
        self.finished = threading.Event()

    def run(self) -> None:
        next_kill = time.monotonic() + self.random.uniform(1.0, self.every)
        killed: set[str] = set()
        while not self.finished.wait(RESTART_DELAY):
            for name, _ in self.stack.workers:
                if self.stack.procs[name].poll() is not None:
                    if name in killed:
                        killed.discard(name)
                    else:
                        self.crashes += 1
                    self.stack.start(name)
            if time.monotonic() >= next_kill:
                name = self.random.choice(DEPLOY_WORKERS)
                self.stack.kill(name)
                killed.add(name)
                self.kills += 1
                next_kill = time.monotonic() + self.random.uniform(1.0, self.every)


class Pusher(threading.Thread):
    """Pushes a commit to ``main`` every 0.5 to ``every`` seconds."""

    def __init__(self, stack: Stack, every: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.every = every
        self.random = random.Random(seed)
        self.pushes = 0
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.wait(self.random.uniform(0.5, self.every)):
            self.stack.sim("POST", f"/_sim/repos/{REPOSITORY}/push", {"ref": "main"})
            self.pushes += 1


class Approver(threading.Thread):
    """An SRE approving, through the control plane's review API, every deploy of the
    reviewed environments the moment its deploy page says GitHub holds it."""

    def __init__(self, web_url: str, token: str, environments: list[str]) -> None:
        super().__init__(daemon=True)
        self.web_url = web_url
        self.token = token
        self.environments = environments
        self.approvals = 0
        self.finished = threading.Event()

    def held(self) -> list[int]:
        from django.db import close_old_connections

        from deploys.models import DeployEvent, DeployRun

        close_old_connections()
        running = DeployRun.objects.filter(
            environment__name__in=self.environments, state=DeployRun.State.RUNNING
        )
        held = []
        for run in running:
            last = (
                DeployEvent.objects.filter(run=run)
                .order_by("-created_at", "-pk")
                .values_list("kind", flat=True)
                .first()
            )
            if last == "approval_waiting":
                held.append(run.pk)
        return held

    def run(self) -> None:
        headers = {"Authorization": f"Token {self.token}"}
        while not self.finished.wait(1.0):
            for pk in self.held():
                url = f"{self.web_url}/api/v1/deploys/{pk}/review/"
                body = {"state": "approved", "comment": "bench approver"}
                try:
                    call(url, "POST", body, headers)
                    self.approvals += 1
                except urllib.error.HTTPError as exc:
                    # 409: no longer held; 502/503: GitHub failed, next round.
                    if exc.code not in (409, 502, 503):
                        raise


def request(url: str, body: dict[str, Any], token: str) -> Any:
    """POST a deploy request as a careful client does: the same Idempotency-Key
    again after a 503 (GitHub did not answer the ref's resolution) or a 409."""
    headers = {"Authorization": f"Token {token}", "Idempotency-Key": str(uuid.uuid4())}
    for _ in range(REQUEST_RETRIES):
        try:
            return call(url, "POST", body, headers)
        except urllib.error.HTTPError as exc:
            if exc.code not in (409, 503):
                raise
            time.sleep(1.0)
    raise SystemExit(f"deploy request still refused after {REQUEST_RETRIES} tries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deploys", type=int, default=100)
    parser.add_argument("--environments", type=int, default=10)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--kill-every", type=float, default=15.0)
    parser.add_argument("--push-every", type=float, default=3.0)
    parser.add_argument("--time-scale", type=float, default=20.0)
    parser.add_argument("--job-seconds", type=float, default=60.0, help="simulated")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--loglevel", default="WARNING", help="the workers' log level")
    args = parser.parse_args()

    def add_runners(stack: Stack) -> None:
        for index in range(args.environments):
            for name in runner_names(index):
                stack.sim("POST", "/_sim/runners", {"name": name, "labels": ["bench"]})
        for workflow in {workflow for workflow, _ in SHAPES}:
            path = f"/_sim/repos/{REPOSITORY}/workflows/{workflow}"
            stack.sim("PUT", path, {"yaml": (WORKFLOWS / workflow).read_text()})
        path = f"/_sim/repos/{REPOSITORY}/workflows/{CANARY_WORKFLOW.name}"
        stack.sim("PUT", path, {"yaml": CANARY_WORKFLOW.read_text()})
        stack.sim(
            "POST",
            "/_sim/config",
            {
                "job_duration": args.job_seconds,
                "retry_after": math.ceil(RETRY_AFTER / args.time_scale),
            },
        )

    var_dir, database_url, env = prepare("deploy-faults")
    scale = args.time_scale
    with Stack(
        env,
        var_dir / "processes.log",
        webhooks=True,
        simulator_args=[
            "--time-scale",
            str(scale),
            "--heartbeat-interval",
            str(10 * scale),
        ],
        workers={name: "deploys" for name in DEPLOY_WORKERS} | {"health": "health"},
        before_demo=add_runners,
        loglevel=args.loglevel,
    ) as stack:
        setup_django(database_url)
        result = measure(stack, args)
        result["database"] = database_url.split(":", 1)[0]
    print(f"process logs: {var_dir / 'processes.log'}", flush=True)
    emit(result)


def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from django.contrib.auth.models import Group, User
    from django.db import close_old_connections
    from knox.models import AuthToken

    from deploys.models import DeployAttempt, DeployEvent, DeployRun, Environment
    from runners.models import Runner

    user = User.objects.create(username="bench-sre")
    user.groups.add(Group.objects.get(name="sre"))
    token = AuthToken.objects.create(user)[1]
    names = [f"faults-{i}" for i in range(args.environments)]
    for index, name in enumerate(names):
        workflow, rule = shape(index)
        environment = Environment.objects.create(
            name=name,
            repository=REPOSITORY,
            workflow_file=workflow,
            required_secrets=["DEPLOY_KEY"],
        )
        environment.set_pool([Runner.objects.get(name=n) for n in runner_names(index)])
        protection: dict[str, Any] = {}
        if rule == "reviewers":
            protection = {"reviewers": [{"type": "User", "id": REVIEWER_ID}]}
        elif rule == "wait_timer":
            protection = {"wait_timer": 1}  # minutes, as GitHub counts them
        call(
            f"{stack.sim_url}/repos/{REPOSITORY}/environments/{name}",
            "PUT",
            protection,
            {"Authorization": f"token {stack.env['GITHUB_TOKEN']}"},
        )
    reviewed = [n for i, n in enumerate(names) if shape(i)[1] == "reviewers"]
    every_runner = [n for i in range(args.environments) for n in runner_names(i)]

    def healthy() -> bool:
        close_old_connections()
        count = Runner.objects.filter(name__in=every_runner, state="healthy").count()
        return count == len(every_runner)

    wait_until(healthy, 120, "the bench runners to turn healthy")

    half = args.fault_rate / 2
    stack.sim(
        "POST",
        "/_sim/faults",
        {
            "clear": True,
            "error_rate": half,
            "secondary_rate_limit_rate": half / 2,
            "too_many_requests_rate": half / 2,
        },
    )
    killer = Killer(stack, args.kill_every, args.seed)
    killer.start()
    pusher = Pusher(stack, args.push_every, args.seed)
    pusher.start()
    approver = Approver(stack.web_url, token, reviewed)
    approver.start()
    started = time.monotonic()
    run_ids: list[int] = []
    final = list(DeployRun.FINAL_STATES)
    try:
        for number in range(args.deploys):
            answer = request(
                f"{stack.web_url}/api/v1/deploys/",
                {"environment": names[number % len(names)], "ref": "main"},
                token,
            )
            run_ids.append(int(answer["id"]))
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            close_old_connections()
            states = Counter(
                DeployRun.objects.filter(pk__in=run_ids).values_list("state", flat=True)
            )
            print(
                f"{time.monotonic() - started:6.0f} s: {dict(sorted(states.items()))}, "
                f"{killer.kills} kills",
                flush=True,
            )
            if sum(states[s] for s in final) == len(run_ids):
                break
            time.sleep(10)
    finally:
        killer.finished.set()
        pusher.finished.set()
        approver.finished.set()
        killer.join()
        pusher.join()
        approver.join()
    elapsed = time.monotonic() - started
    stack.sim("POST", "/_sim/faults", {"clear": True})

    close_old_connections()
    runs = DeployRun.objects.filter(pk__in=run_ids)
    states = Counter(runs.values_list("state", flat=True))
    reasons = Counter(
        runs.exclude(state=DeployRun.State.SUCCEEDED).values_list("reason", flat=True)
    )
    # Every deploy-workflow run GitHub created, by the correlation token in its
    # run-name (a multi-job run lists several jobs: each run counts once).
    deploy_workflows = {workflow_name(WORKFLOWS / w) for w, _ in SHAPES}
    jobs = stack.sim("GET", "/_sim/jobs")["jobs"]
    runs_by_token = {
        (match.group(1), job["run_id"])
        for job in jobs
        if job["workflow_name"] in deploy_workflows
        and (match := TOKEN_RE.search(job["run_display_title"]))
    }
    other_runs = Counter(
        name
        for _, name in {
            (job["run_id"], job["workflow_name"])
            for job in jobs
            if job["workflow_name"] not in deploy_workflows
        }
    )
    dispatched = Counter(token for token, _ in runs_by_token)
    tokens = set(
        DeployAttempt.objects.filter(run_id__in=run_ids).values_list("token", flat=True)
    )
    events = Counter(
        DeployEvent.objects.filter(run_id__in=run_ids).values_list("kind", flat=True)
    )
    terminal = sum(states[s] for s in final)
    shipped = shipped_commits(stack, runs)
    return {
        "deploys": len(run_ids),
        "terminal": terminal,
        "duplicate_dispatches": sum(n - 1 for n in dispatched.values() if n > 1),
        "stuck": len(run_ids) - terminal,
        "states": dict(states),
        "failed_reasons": dict(reasons),
        "attempts": DeployAttempt.objects.filter(run_id__in=run_ids).count(),
        "github_runs": sum(dispatched[t] for t in tokens),
        "foreign_runs": sum(n for t, n in dispatched.items() if t not in tokens),
        "other_runs": dict(other_runs),
        "events": dict(events),
        "wrong_sha": shipped["wrong_sha"],
        "head_moved": shipped["head_moved"],
        "pushes": pusher.pushes,
        "shapes": dict(
            Counter("+".join(filter(None, shape(i))) for i in range(len(names)))
        ),
        "approvals": approver.approvals,
        "worker_kills": killer.kills,
        # Workers that exited by themselves and were restarted.
        "worker_crashes": killer.crashes,
        "github_faults": {
            "rate": args.fault_rate,
            "requests": stack.sim("GET", "/_sim/state")["requests"],
        },
        "seconds": round(elapsed, 1),
    }


def workflow_name(path: Path) -> str:
    """The ``name:`` of a shipped workflow (GitHub's ``workflow_name`` of its jobs)."""
    return str(yaml.safe_load(path.read_text())["name"])


def shipped_commits(stack: Stack, runs: Any) -> dict[str, int]:
    """``wrong_sha`` and ``head_moved`` of the succeeded deploys (see above)."""
    from deploys.models import DeployAttempt, DeployRun

    github = {
        run["id"]: run
        for run in stack.sim("GET", f"/_sim/repos/{REPOSITORY}/checkouts")["runs"]
    }
    wrong = moved = 0
    for run in runs.filter(state=DeployRun.State.SUCCEEDED):
        attempt = (
            DeployAttempt.objects.filter(run=run, state="succeeded")
            .order_by("-number")
            .first()
        )
        seen = github.get(attempt.github_run_id) if attempt else None
        if not run.sha or seen is None or seen["checked_out"] != run.sha:
            wrong += 1
        elif seen["head_sha"] != run.sha:
            moved += 1
    return {"wrong_sha": wrong, "head_moved": moved}


if __name__ == "__main__":
    main()
