"""Everything the simulated GitHub knows, behind one lock.

The HTTP server, the scheduler thread, the webhook and heartbeat senders and tests all go
through :class:`SimState`. Lookups are dictionary-based so a 10,000-runner fleet costs
nothing per request beyond the page being answered.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from random import Random
from typing import Any

from githubsim import shapes
from githubsim.clock import SimClock, isoformat
from githubsim.errors import ApiError, invalid, not_found
from githubsim.hosts import Heartbeat, exporter_text, heartbeat_body
from githubsim.limits import Limits
from githubsim.models import (
    Config,
    Faults,
    Job,
    Run,
    Runner,
    Step,
    Workflow,
)
from githubsim.secretstore import (
    Scope,
    SecretStore,
    environment_scope,
    organization_scope,
    repository_scope,
)

WebhookSink = Callable[[str, dict[str, Any]], None]

ACTOR_LOGIN = "deploy-bot"
ACTOR_ID = 9_000_001
MAX_INPUTS = 25
# The delivery log keeps this many entries (GitHub keeps a few days' worth).
MAX_LOGGED_DELIVERIES = 20_000


class SimState:
    """The simulated GitHub: repositories, runners, runs, jobs, secrets and limits."""

    def __init__(
        self,
        clock: SimClock,
        *,
        config: Config | None = None,
        seed: int | None = None,
        repository: str = "acme/deploy",
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.config = config or Config()
        self.faults = Faults()
        self.random = Random(seed)
        self.limits = Limits(self.lock, clock, self.config, self.random)
        self.default_repository = repository
        # Base URL used in webhook payloads, where no request tells the host.
        self.public_url = "http://127.0.0.1"
        self.webhook_sink: WebhookSink | None = None
        self._reset_data()

    # Setup ---------------------------------------------------------------------------

    def _reset_data(self) -> None:
        self.version = 0
        self._runners: dict[int, Runner] = {}
        self._runner_ids: list[int] = []
        self._by_name: dict[str, int] = {}
        self._label_index: dict[str, set[int]] = {}
        self._custom_label_ids: dict[str, int] = {}
        self._next_runner_id = 1
        self._offline_pending: dict[int, float] = {}
        # When each host with a token sends next; the heap finds the due ones without
        # scanning the fleet (entries that no longer match the dict are stale).
        self._heartbeat_due: dict[int, float] = {}
        self._heartbeat_heap: list[tuple[float, int]] = []
        self._runs: dict[int, Run] = {}
        self._jobs: dict[int, Job] = {}
        self._active_jobs: dict[int, Job] = {}
        self._next_run_id = 10_000_001
        self._next_job_id = 20_000_001
        self._run_numbers: Counter[int] = Counter()
        self.repositories: dict[str, int] = {}
        self.organizations: dict[str, int] = {}
        self.workflows: dict[int, Workflow] = {}
        self._secret_stores: dict[Scope, SecretStore] = {}
        self._page_cache: dict[tuple[int, int], tuple[int, bytes, str]] = {}
        self.limits.reset()
        self.webhooks_sent = 0
        self.webhooks_failed = 0
        # The hook's delivery log, oldest first (dicts keep insertion order).
        self._deliveries: dict[int, dict[str, Any]] = {}
        self._next_delivery_id = 30_000_001
        self.heartbeats_sent = 0
        self.heartbeats_failed = 0
        self.add_repository(self.default_repository)

    def reset(self) -> None:
        """Forget runners, runs, secrets, faults, budgets and counters; keep the config."""
        with self.lock:
            self.faults = Faults()
            self._reset_data()

    def add_repository(self, full_name: str, workflow_file: str = "deploy.yml") -> None:
        """Create a repository (and its owner organization) with one dispatchable workflow."""
        with self.lock:
            if full_name in self.repositories:
                return
            owner = full_name.split("/", 1)[0]
            self.organizations.setdefault(
                owner, 8_000_000 + len(self.organizations) + 1
            )
            self.repositories[full_name] = 7_000_000 + len(self.repositories) + 1
            workflow_id = 6_000_000 + len(self.workflows) + 1
            self.workflows[workflow_id] = Workflow(
                workflow_id,
                full_name,
                f".github/workflows/{workflow_file}",
                "Deploy",
                shapes.EPOCH_2020,
            )

    def load_demo(self) -> None:
        """A small fleet, the ``acme/deploy`` repository and a few secrets."""
        with self.lock:
            repo = self.default_repository
            self.add_runner("prod-primary-1", ["production", "primary"])
            self.add_runner("prod-secondary-1", ["production", "secondary"])
            self.add_runner("prod-secondary-2", ["production", "secondary"])
            self.add_runner("staging-1", ["staging"])
            self.add_runner("staging-2", ["staging"])
            self.add_runner("build-1", ["build"])
            self.add_runner("build-2", ["build"])
            self.add_runner("canary-1", ["canary"], arch="ARM64")
            now = self.clock.now()
            self.set_secret(repository_scope(repo), "DEPLOY_KEY", "demo-deploy-key")
            self.set_secret(repository_scope(repo), "REGISTRY_TOKEN", "demo-registry")
            self.set_secret(
                environment_scope(repo, "production"), "PROD_DB_PASSWORD", "demo-db"
            )
            self.set_secret(
                environment_scope(repo, "staging"), "STAGING_DB_PASSWORD", "demo-db"
            )
            self.set_secret(
                organization_scope(repo.split("/")[0]),
                "SLACK_WEBHOOK",
                "demo-slack",
                visibility="private",
            )
            # Secrets last rotated long ago, so rotation schedules have work to show:
            # on a 90-day interval one is overdue and one due soon.
            store = self._store(repository_scope(repo))
            for name, days in (("REGISTRY_TOKEN", 120), ("DEPLOY_KEY", 80)):
                old = store.get(name)
                old.created_at = old.updated_at = now - days * 86400

    # Runners -------------------------------------------------------------------------

    def _bump(self) -> None:
        self.version += 1

    def add_runner(
        self,
        name: str,
        labels: Iterable[str] = (),
        *,
        os: str = "Linux",
        arch: str = "X64",
    ) -> Runner:
        """Register a runner; its own name is one of its custom labels (deploys target it)."""
        with self.lock:
            if name in self._by_name:
                raise invalid(f"Runner {name} already exists", "name", "already_exists")
            custom = [label for label in dict.fromkeys([*labels, name]) if label]
            runner = Runner(
                id=self._next_runner_id,
                name=name,
                custom_labels=custom,
                os=os,
                arch=arch,
                booted_at=self.clock.now(),
            )
            self._next_runner_id += 1
            self._runners[runner.id] = runner
            self._runner_ids.append(runner.id)
            self._by_name[name] = runner.id
            for label in runner.labels:
                self._label_index.setdefault(label.casefold(), set()).add(runner.id)
            for label in custom:
                self._custom_label_ids.setdefault(
                    label, 100 + len(self._custom_label_ids)
                )
            self._bump()
            return runner

    def add_runners(
        self, count: int, prefix: str = "runner", labels: Iterable[str] = ()
    ) -> list[Runner]:
        """Add ``count`` runners named ``{prefix}-{n}``, numbering on from existing ones."""
        with self.lock:
            labels = list(labels)
            added: list[Runner] = []
            number = 1
            while len(added) < count:
                name = f"{prefix}-{number}"
                number += 1
                if name not in self._by_name:
                    added.append(self.add_runner(name, labels))
            return added

    def runner(self, name_or_id: str | int) -> Runner:
        with self.lock:
            if isinstance(name_or_id, str) and name_or_id in self._by_name:
                return self._runners[self._by_name[name_or_id]]
            try:
                return self._runners[int(name_or_id)]
            except (KeyError, ValueError):
                raise ApiError(404, f"No runner named {name_or_id}") from None

    def find_runner(self, name: str) -> Runner | None:
        with self.lock:
            runner_id = self._by_name.get(name)
            return None if runner_id is None else self._runners[runner_id]

    def runners(self) -> list[Runner]:
        with self.lock:
            return [self._runners[i] for i in self._runner_ids]

    def remove_runner(self, name: str) -> None:
        """Delete a runner from GitHub; a job it was running is lost."""
        with self.lock:
            runner = self.runner(name)
            now = self.clock.now()
            if runner.job_id is not None:
                self._lose(
                    self._jobs[runner.job_id], now, f"runner {runner.name} removed"
                )
            del self._runners[runner.id]
            self._runner_ids.remove(runner.id)
            del self._by_name[runner.name]
            for label in runner.labels:
                self._label_index.get(label.casefold(), set()).discard(runner.id)
            self._offline_pending.pop(runner.id, None)
            self._heartbeat_due.pop(runner.id, None)
            self._bump()

    def kill(self, name: str) -> Runner:
        """The host dies: GitHub notices after the offline lag; its job is lost."""
        with self.lock:
            runner = self.runner(name)
            if not runner.alive:
                return runner
            now = self.clock.now()
            runner.alive = False
            self._offline_pending[runner.id] = now + self.config.offline_lag
            if runner.job_id is not None:
                self._lose(self._jobs[runner.job_id], now, f"runner {runner.name} died")
            return runner

    def revive(self, name: str) -> Runner:
        """The host boots again and its runner reconnects to GitHub at once."""
        with self.lock:
            runner = self.runner(name)
            if runner.alive:
                return runner
            runner.alive = True
            runner.booted_at = self.clock.now()
            self._offline_pending.pop(runner.id, None)
            # The restarted runner process no longer knows the job it was running.
            runner.job_id = None
            runner.status = "online"
            self._bump()
            return runner

    def set_heartbeats(self, name: str, enabled: bool) -> Runner:
        with self.lock:
            runner = self.runner(name)
            runner.heartbeats = enabled
            return runner

    def set_heartbeat_token(self, name: str, token: str) -> Runner:
        with self.lock:
            runner = self.runner(name)
            runner.heartbeat_token = token or None
            if token:
                # Spread the fleet over the interval instead of a thundering herd.
                phase = (
                    (runner.id * 7919 % 1000) / 1000 * self.config.heartbeat_interval
                )
                due = self.clock.now() + phase
                self._heartbeat_due[runner.id] = due
                heapq.heappush(self._heartbeat_heap, (due, runner.id))
            else:
                self._heartbeat_due.pop(runner.id, None)
            return runner

    def fill_disk(self, name: str, free_percent: float = 3.0) -> Runner:
        with self.lock:
            runner = self.runner(name)
            runner.disk_free_bytes = int(runner.disk_total_bytes * free_percent / 100)
            return runner

    def set_load(self, name: str, load1: float) -> Runner:
        with self.lock:
            runner = self.runner(name)
            runner.load1 = float(load1)
            return runner

    def runner_view(self, runner: Runner) -> dict[str, Any]:
        """A runner as the control API shows it: GitHub's view plus the host's truth."""
        with self.lock:
            return {
                **shapes.runner(runner, self._custom_label_ids),
                "alive": runner.alive,
                "job_id": runner.job_id,
                "heartbeats": runner.heartbeats,
                "heartbeat_token_set": runner.heartbeat_token is not None,
                "disk_free_bytes": runner.disk_free_bytes,
                "disk_total_bytes": runner.disk_total_bytes,
                "load1": runner.load1,
                "cpus": runner.cpus,
            }

    def runners_page(self, page: int, per_page: int) -> tuple[bytes, str]:
        """One page of the runner list as JSON bytes and its ETag, cached per version."""
        with self.lock:
            key = (page, per_page)
            cached = self._page_cache.get(key)
            if cached is not None and cached[0] == self.version:
                return cached[1], cached[2]
            if cached is not None or len(self._page_cache) > 1000:
                # Any change invalidates every page; drop the stale ones together.
                self._page_cache = {
                    k: v for k, v in self._page_cache.items() if v[0] == self.version
                }
            start = (page - 1) * per_page
            ids = self._runner_ids[start : start + per_page]
            body = json.dumps(
                {
                    "total_count": len(self._runner_ids),
                    "runners": [
                        shapes.runner(self._runners[i], self._custom_label_ids)
                        for i in ids
                    ],
                }
            ).encode()
            etag = f'"{hashlib.sha256(body).hexdigest()[:40]}"'
            self._page_cache[key] = (self.version, body, etag)
            return body, etag

    def runner_count(self) -> int:
        return len(self._runner_ids)

    def custom_label_ids(self) -> dict[str, int]:
        return self._custom_label_ids

    # Workflows, runs and jobs ----------------------------------------------------------

    def repository_id(self, full_name: str) -> int:
        try:
            return self.repositories[full_name]
        except KeyError:
            raise not_found() from None

    def workflow(self, full_name: str, workflow_ref: str) -> Workflow:
        self.repository_id(full_name)
        for flow in self.workflows.values():
            if flow.repository != full_name:
                continue
            if workflow_ref in (str(flow.id), flow.path, flow.path.rsplit("/", 1)[-1]):
                return flow
        raise not_found()

    def dispatch(
        self, full_name: str, workflow_ref: str, ref: str, inputs: dict[str, Any]
    ) -> Run:
        """Create a run with one ``deploy`` job that wants the runner named in inputs."""
        with self.lock:
            flow = self.workflow(full_name, workflow_ref)
            if len(inputs) > MAX_INPUTS:
                raise invalid(
                    f"you may only define up to {MAX_INPUTS} inputs for a workflow_dispatch",
                    "inputs",
                )
            now = self.clock.now()
            branch = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
            target = str(inputs.get("runner") or "")
            job = Job(
                id=self._next_job_id,
                run_id=self._next_run_id,
                labels=["self-hosted", target] if target else ["self-hosted"],
                created_at=now,
            )
            self._run_numbers[flow.id] += 1
            # The reference workflow's run-name is "Deploy {ref} [{inputs.token}]".
            title = f"Deploy {branch} [{inputs.get('token', '')}]"
            run = Run(
                id=self._next_run_id,
                run_number=self._run_numbers[flow.id],
                repository=full_name,
                workflow_id=flow.id,
                ref=branch,
                inputs=dict(inputs),
                display_title=title,
                head_sha=shapes.head_sha(branch),
                created_at=now,
                updated_at=now,
                job_id=job.id,
            )
            self._next_run_id += 1
            self._next_job_id += 1
            self._runs[run.id] = run
            self._jobs[job.id] = job
            self._active_jobs[job.id] = job
            self._emit_run("requested", run)
            self._emit_job("queued", job)
            return run

    def get_run(self, full_name: str, run_id: int) -> Run:
        run = self._runs.get(run_id)
        if run is None or run.repository != full_name:
            raise not_found()
        return run

    def get_job(self, full_name: str | None, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None or (
            full_name is not None and self._runs[job.run_id].repository != full_name
        ):
            raise not_found()
        return job

    def runs(self, full_name: str) -> list[Run]:
        """Runs of a repository, newest first as GitHub lists them."""
        with self.lock:
            return [
                r for r in reversed(self._runs.values()) if r.repository == full_name
            ]

    def jobs(self) -> list[Job]:
        with self.lock:
            return list(self._jobs.values())

    def cancel_run(self, full_name: str, run_id: int, *, force: bool = False) -> None:
        """Cancel like GitHub: a job on a dead runner only stops on force-cancel."""
        with self.lock:
            run = self.get_run(full_name, run_id)
            job = self._jobs[run.job_id]
            if run.status == "completed":
                raise ApiError(409, "Cannot cancel a workflow run that is completed.")
            now = self.clock.now()
            if force or job.status == "queued":
                job.note = job.note or ("force-cancelled" if force else "cancelled")
                self._complete(job, "cancelled", now)
                return
            runner = self._runners.get(job.runner_id or 0)
            reachable = runner is not None and runner.alive
            if reachable and job.lease_expires_at is None and job.cancel_at is None:
                job.cancel_at = now + self.config.cancel_delay
                job.note = "cancel requested"
            elif not reachable or job.lease_expires_at is not None:
                # Nobody is left to receive the cancel; GitHub keeps it in progress.
                job.note = f"{job.note}; cancel requested but the runner is unreachable"

    def lose_job(self, job_id: int) -> Job:
        """The running job loses contact with GitHub; it fails when the lease expires."""
        with self.lock:
            job = self.get_job(None, job_id)
            if job.status != "in_progress":
                raise ApiError(409, f"Job {job_id} is {job.status}, not in_progress")
            self._lose(job, self.clock.now(), "lost via the control API")
            return job

    def job_view(self, job: Job) -> dict[str, Any]:
        """A job as the control API shows it, including the simulator's note of why."""
        with self.lock:
            run = self._runs[job.run_id]
            return {
                **shapes.job(
                    self.public_url, job, run, self.workflows[run.workflow_id]
                ),
                "note": job.note,
                "lease_expires_at": _iso_or_none(job.lease_expires_at),
                "cancel_at": _iso_or_none(job.cancel_at),
                "finish_at": _iso_or_none(job.finish_at),
                "run_display_title": run.display_title,
            }

    def _lose(self, job: Job, now: float, why: str) -> None:
        job.finish_at = None
        job.cancel_at = None
        if job.lease_expires_at is None:
            job.lease_expires_at = now + self.config.lease_timeout
        job.note = (
            f"{why}; GitHub fails it with 'lost communication' when the lease expires"
        )

    def tick(self) -> None:
        """Advance runners and jobs whose deadlines have passed (the scheduler thread)."""
        with self.lock:
            now = self.clock.now()
            for runner_id, at in list(self._offline_pending.items()):
                if now >= at:
                    del self._offline_pending[runner_id]
                    self._runners[runner_id].status = "offline"
                    self._bump()
            config = self.config
            for job in list(self._active_jobs.values()):
                if job.status == "queued":
                    if now - job.created_at >= config.queued_job_timeout:
                        job.note = "no runner picked it up within 24 hours"
                        self._complete(job, "cancelled", now)
                    elif now >= job.created_at + config.pickup_delay:
                        self._try_assign(job, now)
                elif job.cancel_at is not None and now >= job.cancel_at:
                    self._complete(job, "cancelled", now)
                elif job.lease_expires_at is not None and now >= job.lease_expires_at:
                    self._complete(job, "failure", now, lost=True)
                elif job.finish_at is not None and now >= job.finish_at:
                    self._complete(job, config.outcome, now)

    def _try_assign(self, job: Job, now: float) -> None:
        wanted = [label.casefold() for label in job.labels]
        pools = [self._label_index.get(label, set()) for label in wanted]
        candidates = min(pools, key=len)
        for runner_id in sorted(candidates):
            runner = self._runners[runner_id]
            if not (
                runner.alive and runner.status == "online" and runner.job_id is None
            ):
                continue
            if all(runner_id in pool for pool in pools):
                self._start(job, runner, now)
                return

    def _start(self, job: Job, runner: Runner, now: float) -> None:
        runner.job_id = job.id
        job.status = "in_progress"
        job.started_at = now
        job.runner_id = runner.id
        job.runner_name = runner.name
        job.finish_at = now + self.config.job_duration
        job.steps = [
            Step("Set up job", 1, "completed", "success", now, now),
            Step("Deploy", 2, "in_progress", None, now),
            Step("Complete job", 3),
        ]
        run = self._runs[job.run_id]
        run.status = "in_progress"
        run.run_started_at = now
        run.updated_at = now
        self._bump()
        self._emit_job("in_progress", job)
        self._emit_run("in_progress", run)

    def _complete(
        self, job: Job, conclusion: str, now: float, lost: bool = False
    ) -> None:
        for step in job.steps:
            if step.status == "completed":
                continue
            if conclusion == "success":
                step.conclusion = "success"
            elif conclusion == "failure" and not lost:
                step.conclusion = (
                    "failure" if step.status == "in_progress" else "skipped"
                )
            else:
                # Cancelled and lost jobs leave their steps cancelled, never failed.
                step.conclusion = "cancelled"
            step.status = "completed"
            step.started_at = step.started_at or now
            step.completed_at = now
        job.status = "completed"
        job.conclusion = conclusion
        job.completed_at = now
        job.finish_at = job.cancel_at = job.lease_expires_at = None
        self._active_jobs.pop(job.id, None)
        runner = self._runners.get(job.runner_id or 0)
        if runner is not None and runner.job_id == job.id:
            runner.job_id = None
            self._bump()
        run = self._runs[job.run_id]
        run.status = "completed"
        run.conclusion = conclusion
        run.updated_at = now
        self._emit_job("completed", job)
        self._emit_run("completed", run)

    # Webhook payloads -------------------------------------------------------------------

    def actor(self, base: str) -> dict[str, Any]:
        return shapes.user(base, ACTOR_LOGIN, ACTOR_ID, "Bot")

    def repository_json(self, base: str, full_name: str) -> dict[str, Any]:
        owner = full_name.split("/", 1)[0]
        return shapes.repository(
            base, full_name, self.repository_id(full_name), self.organizations[owner]
        )

    def run_json(self, base: str, run: Run) -> dict[str, Any]:
        return shapes.run(
            base,
            run,
            self.workflows[run.workflow_id],
            self.repository_json(base, run.repository),
            self.actor(base),
        )

    def job_json(self, base: str, job: Job) -> dict[str, Any]:
        run = self._runs[job.run_id]
        return shapes.job(base, job, run, self.workflows[run.workflow_id])

    def _emit_job(self, action: str, job: Job) -> None:
        if self.webhook_sink is None:
            return
        base = self.public_url
        run = self._runs[job.run_id]
        self.webhook_sink(
            "workflow_job",
            {
                "action": action,
                "workflow_job": self.job_json(base, job),
                "repository": self.repository_json(base, run.repository),
                "sender": self.actor(base),
            },
        )

    def _emit_run(self, action: str, run: Run) -> None:
        if self.webhook_sink is None:
            return
        base = self.public_url
        self.webhook_sink(
            "workflow_run",
            {
                "action": action,
                "workflow_run": self.run_json(base, run),
                "workflow": shapes.workflow(base, self.workflows[run.workflow_id]),
                "repository": self.repository_json(base, run.repository),
                "sender": self.actor(base),
            },
        )

    # The webhook's delivery log ---------------------------------------------------------

    def hook_owner(self, scope: str) -> str:
        """The repository or organization the simulated webhook is installed on."""
        repo = self.default_repository
        return repo if scope == "repository" else repo.split("/", 1)[0]

    def log_delivery(
        self,
        *,
        guid: str,
        event: str,
        payload: dict[str, Any],
        redelivery: bool,
        status_code: int,
        status: str,
        duration: float,
        request_headers: dict[str, str],
        response_headers: dict[str, str],
        response_body: str,
    ) -> dict[str, Any]:
        with self.lock:
            delivery_id = self._next_delivery_id
            record: dict[str, Any] = {
                "id": delivery_id,
                "guid": guid,
                "event": event,
                "action": payload.get("action"),
                "payload": payload,
                "redelivery": redelivery,
                "status_code": status_code,
                "status": status,
                "duration": duration,
                "delivered_at": self.clock.now(),
                "repository_id": (payload.get("repository") or {}).get("id"),
                "request_headers": request_headers,
                "response_headers": response_headers,
                "response_body": response_body,
            }
            self._next_delivery_id += 1
            self._deliveries[delivery_id] = record
            if len(self._deliveries) > MAX_LOGGED_DELIVERIES:
                del self._deliveries[next(iter(self._deliveries))]
            return record

    def deliveries(self) -> list[dict[str, Any]]:
        """The delivery log, newest first."""
        with self.lock:
            return list(reversed(self._deliveries.values()))

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        with self.lock:
            record = self._deliveries.get(delivery_id)
            if record is None:
                raise not_found()
            return record

    # Secrets --------------------------------------------------------------------------

    def _store(self, scope: Scope) -> SecretStore:
        kind = scope[0]
        if kind in ("repository", "environment"):
            self.repository_id(scope[1])
        elif kind == "organization":
            if scope[1] not in self.organizations:
                raise not_found()
        else:
            raise ValueError(f"unknown secret scope {scope!r}")
        store = self._secret_stores.get(scope)
        if store is None:
            # Environments spring into existence on first use, like a repo admin made them.
            store = self._secret_stores[scope] = SecretStore()
        return store

    def secret_store(self, scope: Scope) -> SecretStore:
        with self.lock:
            return self._store(scope)

    def set_secret(
        self, scope: Scope, name: str, plaintext: str, *, visibility: str | None = None
    ) -> None:
        """Set a secret directly (test and demo setup), as if written outside the app."""
        with self.lock:
            if scope[0] == "organization" and visibility is None:
                visibility = "all"
            self._store(scope).put_plain(name, plaintext, self.clock.now(), visibility)

    def decrypt_secret(self, scope: Scope, name: str) -> str:
        """The plaintext a client sealed into a secret (for test assertions only)."""
        with self.lock:
            return self._store(scope).get(name).plaintext

    # Rate limits, faults, tokens and request counts -----------------------------------

    def set_faults(self, **changes: Any) -> Faults:
        with self.lock:
            for key, value in changes.items():
                if not hasattr(self.faults, key):
                    raise ApiError(422, f"Unknown fault {key!r}")
                setattr(self.faults, key, coerce(key, getattr(self.faults, key), value))
            return self.faults

    def set_config(self, **changes: Any) -> Config:
        with self.lock:
            for key, value in changes.items():
                if key == "time_scale":
                    self.clock.set_time_scale(coerce(key, 1.0, value))
                    continue
                if not hasattr(self.config, key):
                    raise ApiError(422, f"Unknown setting {key!r}")
                setattr(self.config, key, coerce(key, getattr(self.config, key), value))
            if self.config.webhook_scope not in ("repository", "organization"):
                self.config.webhook_scope = "repository"
                raise ApiError(422, "webhook_scope must be repository or organization")
            if self.config.outcome not in ("success", "failure"):
                self.config.outcome = "success"
                raise ApiError(422, "outcome must be success or failure")
            return self.config

    def request_count(self, route: str | None = None) -> int:
        """Requests received for one route, or in total.

        Routes read like ``"GET /repos/{owner}/{repo}/actions/runners"``. Counts include
        answers that were faults, 304s and rate-limit refusals.
        """
        return self.limits.request_count(route)

    def request_counts(self) -> dict[str, int]:
        return self.limits.request_counts()

    def reset_request_counts(self) -> None:
        self.limits.reset_request_counts()

    # Heartbeats and exporters -----------------------------------------------------------

    def due_heartbeats(self) -> list[Heartbeat]:
        """Heartbeats due now from live hosts whose agent runs and has a token."""
        with self.lock:
            now = self.clock.now()
            interval = self.config.heartbeat_interval
            due: list[Heartbeat] = []
            heap = self._heartbeat_heap
            while heap and heap[0][0] <= now:
                at, runner_id = heapq.heappop(heap)
                if self._heartbeat_due.get(runner_id) != at:
                    continue
                following = max(at + interval, now)
                self._heartbeat_due[runner_id] = following
                heapq.heappush(heap, (following, runner_id))
                runner = self._runners[runner_id]
                if not (runner.alive and runner.heartbeats and runner.heartbeat_token):
                    continue
                due.append(
                    Heartbeat(
                        runner.name, runner.heartbeat_token, heartbeat_body(runner, now)
                    )
                )
            return due

    def exporter_metrics(self, name: str) -> str | None:
        """node_exporter text for a runner's host; None when the host is down."""
        with self.lock:
            runner = self.runner(name)
            if not runner.alive:
                return None
            return exporter_text(runner, self.clock.now())

    # Summary ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        with self.lock:
            runners = self._runners.values()
            jobs = Counter(job.status for job in self._jobs.values())
            return {
                "time": isoformat(self.clock.now()),
                "time_scale": self.clock.time_scale,
                "runners": {
                    "total": len(self._runners),
                    "alive": sum(r.alive for r in runners),
                    "online": sum(r.status == "online" for r in runners),
                    "busy": sum(r.busy for r in runners),
                },
                "runs": len(self._runs),
                "jobs": {
                    "queued": jobs["queued"],
                    "in_progress": jobs["in_progress"],
                    "completed": jobs["completed"],
                },
                "webhooks": {
                    "sent": self.webhooks_sent,
                    "failed": self.webhooks_failed,
                },
                "heartbeats": {
                    "sent": self.heartbeats_sent,
                    "failed": self.heartbeats_failed,
                },
                "requests": self.limits.request_count(),
                "faults": self.faults.as_dict(),
                "config": self.config.as_dict(),
            }


def coerce(key: str, current: Any, value: Any) -> Any:
    """``value`` converted to the type of the setting it replaces, or a 422."""
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        converted = type(current)(value)
    except (TypeError, ValueError):
        raise ApiError(422, f"{key} cannot be {value!r}") from None
    if isinstance(converted, int | float) and converted < 0:
        raise ApiError(422, f"{key} cannot be negative")
    return converted


def _iso_or_none(epoch: float | None) -> str | None:
    return None if epoch is None else isoformat(epoch)
