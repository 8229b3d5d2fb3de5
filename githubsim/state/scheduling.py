"""Jobs on runners: assignment to self-hosted or GitHub-hosted runners, finishing,
cancelling and losing jobs, and the ``workflow_run`` / ``workflow_job`` events.

The run a job belongs to (its other jobs, ``needs``, the run's conclusion) is
:mod:`githubsim.state.runs`; every job that completes is handed back to it through
:meth:`_settle`.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from githubsim import commands, shapes
from githubsim.models import Job, Run, Step
from githubsim.state.runners import RunnersMixin

HOSTED_RUNNER_ID = 1_000_000


class SchedulingMixin(RunnersMixin):
    """The active jobs the scheduler thread advances."""

    _runs: dict[int, Run]
    _jobs: dict[int, Job]
    _active_jobs: dict[int, Job]
    _hosted_runners: int

    @abstractmethod
    def _settle(self, run: Run, now: float) -> None:
        """A job of ``run`` completed: create the jobs that waited for it, end the run."""

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

    def _cancel_job(self, job: Job, now: float, force: bool) -> None:
        """Cancel like GitHub: a job on a dead runner only stops on force-cancel."""
        if not job.active:
            return
        if force or job.status in ("queued", "waiting"):
            job.note = job.note or ("force-cancelled" if force else "cancelled")
            self._complete(job, "cancelled", now)
            return
        runner = None if job.hosted else self._runners.get(job.runner_id or 0)
        reachable = job.hosted or (runner is not None and runner.alive)
        if reachable and job.lease_expires_at is None and job.cancel_at is None:
            job.cancel_at = now + self.config.cancel_delay
            job.note = "cancel requested"
        elif not reachable or job.lease_expires_at is not None:
            # Nobody is left to receive the cancel; GitHub keeps it in progress.
            job.note = f"{job.note}; cancel requested but the runner is unreachable"

    # The scheduler thread ----------------------------------------------------------------

    def _advance_jobs(self, now: float) -> None:
        """Assign, finish, cancel or fail jobs whose deadlines have passed."""
        config = self.config
        for job in list(self._active_jobs.values()):
            if not job.active:
                continue  # completed by an earlier job's settling in this pass
            if job.status == "queued":
                if now - job.created_at >= config.queued_job_timeout:
                    job.note = "no runner picked it up within 24 hours"
                    self._complete(job, "cancelled", now)
                elif now >= job.created_at + config.pickup_delay:
                    self._try_assign(job, now)
            elif job.status != "in_progress":
                continue  # waiting on a protection rule: not for a runner yet
            elif job.cancel_at is not None and now >= job.cancel_at:
                self._complete(job, "cancelled", now)
            elif job.lease_expires_at is not None and now >= job.lease_expires_at:
                self._complete(job, "failure", now, lost=True)
            elif job.finish_at is not None and now >= job.finish_at:
                self._complete(job, job.outcome or config.outcome, now)

    def _try_assign(self, job: Job, now: float) -> None:
        if job.hosted:
            # GitHub's hosted pool always has a runner to spare.
            self._hosted_runners += 1
            number = self._hosted_runners
            self._start(job, HOSTED_RUNNER_ID + number, f"GitHub Actions {number}", now)
            return
        wanted = [label.casefold() for label in job.labels]
        pools = [self._label_index.get(label, set()) for label in wanted]
        candidates = min(pools, key=len)
        for runner_id in sorted(candidates):
            runner = self._runners[runner_id]
            if not (
                runner.alive
                and runner.takes_jobs
                and runner.status == "online"
                and runner.job_id is None
            ):
                continue
            if all(runner_id in pool for pool in pools):
                runner.job_id = job.id
                self._bump()
                self._start(job, runner.id, runner.name, now)
                return

    def _start(self, job: Job, runner_id: int, runner_name: str, now: float) -> None:
        job.status = "in_progress"
        job.started_at = now
        job.runner_id = runner_id
        job.runner_name = runner_name
        duration = self.config.job_duration if job.duration is None else job.duration
        job.finish_at = now + duration
        job.steps = self._steps(job, now)
        self._emit_job("in_progress", job)
        run = self._runs[job.run_id]
        command = self.workflows[run.workflow_id].command
        if command is not None and not job.hosted:
            job.finish_at = None  # the command's exit ends the job
            runner = self._runners.get(runner_id)
            token = runner.heartbeat_token if runner is not None else None
            env = commands.environment(command, job, run, self.public_url, token)
            job.note = f"running {command.argv[-1].rsplit('/', 1)[-1]}"
            commands.launch(command, env, job.id, self._command_finished)
        run.updated_at = now
        if run.status != "in_progress":
            run.status = "in_progress"
            run.run_started_at = now
            self._emit_run("in_progress", run)

    def _command_finished(self, job_id: int, conclusion: str, note: str) -> None:
        """A job's command exited: the job ends with it, unless it was cancelled or
        lost meanwhile (GitHub keeps that verdict)."""
        with self.lock:
            job = self._jobs.get(job_id)
            if job is None or job.status != "in_progress":
                return
            if job.cancel_at is not None or job.lease_expires_at is not None:
                return
            job.note = note
            self._complete(job, conclusion, self.clock.now())

    def _steps(self, job: Job, now: float) -> list[Step]:
        """The job's steps as it starts: set up, its own work (named after the job)."""
        return [
            Step("Set up job", 1, "completed", "success", now, now),
            Step(
                job.name.replace("-", " ").replace("_", " ").capitalize(),
                2,
                "in_progress",
                None,
                now,
            ),
            Step("Complete job", 3),
        ]

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
        runner = None if job.hosted else self._runners.get(job.runner_id or 0)
        if runner is not None and runner.job_id == job.id:
            runner.job_id = None
            self._bump()
        run = self._runs[job.run_id]
        run.updated_at = now
        self._emit_job("completed", job)
        self._settle(run, now)

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
