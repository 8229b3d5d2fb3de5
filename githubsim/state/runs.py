"""Workflow runs and their jobs: dispatch, scheduling onto runners, cancel, loss, events.

Each run has one job today; the job queue, runner assignment and the ``workflow_run`` /
``workflow_job`` events all live here so runs with several jobs change this module only.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from githubsim import shapes
from githubsim.clock import isoformat
from githubsim.errors import ApiError, invalid, not_found
from githubsim.models import Job, Run, Runner, Step
from githubsim.state.runners import RunnersMixin

MAX_INPUTS = 25


class RunsMixin(RunnersMixin):
    """Runs and jobs by id, the active jobs the scheduler advances, and their webhooks."""

    def _reset_runs(self) -> None:
        self._runs: dict[int, Run] = {}
        self._jobs: dict[int, Job] = {}
        self._active_jobs: dict[int, Job] = {}
        self._next_run_id = 10_000_001
        self._next_job_id = 20_000_001
        self._run_numbers: Counter[int] = Counter()

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
            self._release(job, now)
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
            if force or job.status in ("queued", "waiting"):
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

    def _release(self, job: Job, now: float) -> None:
        """The job is ready: queued for a runner, unless its environment holds it."""
        environment = str(self._runs[job.run_id].inputs.get("environment") or "")
        if self._held(job, environment or None, now):
            return
        job.status = "queued"
        self._emit_job("queued", job)

    def _held(self, job: Job, environment: str | None, now: float) -> bool:
        """Whether a protection rule holds the job (the environments mixin decides)."""
        return False

    def _lose_job(self, job_id: int, now: float, why: str) -> None:
        self._lose(self._jobs[job_id], now, why)

    def _lose(self, job: Job, now: float, why: str) -> None:
        job.finish_at = None
        job.cancel_at = None
        if job.lease_expires_at is None:
            job.lease_expires_at = now + self.config.lease_timeout
        job.note = (
            f"{why}; GitHub fails it with 'lost communication' when the lease expires"
        )

    # Scheduling ------------------------------------------------------------------------

    def _advance_jobs(self, now: float) -> None:
        """Assign, finish, cancel or fail jobs whose deadlines have passed."""
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

    # Payloads and webhook events ---------------------------------------------------------

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


def _iso_or_none(epoch: float | None) -> str | None:
    return None if epoch is None else isoformat(epoch)
