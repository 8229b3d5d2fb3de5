"""Workflow runs and their jobs: dispatch, ``needs``, the run's conclusion, cancel, loss.

A run holds its workflow's jobs, resolved from the dispatch inputs. A job exists (is
listed, sends ``workflow_job`` queued) only once every job it ``needs`` has succeeded;
:meth:`RunsMixin._release` is the one place a job becomes ready for a runner. Jobs whose
needs failed, were cancelled or skipped complete as ``skipped``. Scheduling onto runners is
:mod:`githubsim.state.scheduling`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from githubsim import shapes
from githubsim.clock import isoformat
from githubsim.errors import ApiError, invalid, not_found
from githubsim.models import Job, JobSpec, Run, Workflow
from githubsim.state.commits import CommitsMixin
from githubsim.state.scheduling import SchedulingMixin
from githubsim.workflows import check_inputs, resolved

MAX_INPUTS = 25


class RunsMixin(SchedulingMixin, CommitsMixin):
    """Runs and jobs by id, and the jobs each run still waits to create."""

    def _reset_runs(self) -> None:
        self._runs: dict[int, Run] = {}
        self._jobs: dict[int, Job] = {}
        self._active_jobs: dict[int, Job] = {}
        self._next_run_id = 10_000_001
        self._next_job_id = 20_000_001
        self._run_numbers: Counter[int] = Counter()
        self._hosted_runners = 0

    def dispatch(
        self, full_name: str, workflow_ref: str, ref: str, inputs: dict[str, Any]
    ) -> Run:
        """Create a run of the workflow's jobs; those without ``needs`` are queued."""
        with self.lock:
            flow = self.workflow(full_name, workflow_ref)
            if len(inputs) > MAX_INPUTS:
                raise invalid(
                    f"you may only define up to {MAX_INPUTS} inputs for a workflow_dispatch",
                    "inputs",
                )
            # GitHub's 422 for an input the file does not declare or a required one
            # left out: nothing is created.
            check_inputs(flow.inputs, inputs)
            branch = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
            # The reference workflows' run-name: "Deploy {ref} [{inputs.token}]",
            # with " {inputs.ticket}" after the ref when a ticket was sent.
            ticket = inputs.get("ticket") or ""
            shown = f" {ticket}" if ticket else ""
            title = f"Deploy {branch}{shown} [{inputs.get('token', '')}]"
            return self._create_run(
                flow,
                branch,
                dict(inputs),
                title,
                flow.jobs,
                git_ref=ref if ref.startswith("refs/") else "",
            )

    def _create_run(
        self,
        flow: Workflow,
        branch: str,
        inputs: dict[str, Any],
        title: str,
        specs: list[JobSpec],
        *,
        traffic: bool = False,
        git_ref: str = "",
    ) -> Run:
        now = self.clock.now()
        head_sha = self.dispatch_sha(flow.repository, git_ref or branch)
        self._run_numbers[flow.id] += 1
        run = Run(
            id=self._next_run_id,
            run_number=self._run_numbers[flow.id],
            repository=flow.repository,
            workflow_id=flow.id,
            ref=branch,
            inputs=inputs,
            display_title=title,
            head_sha=head_sha,
            created_at=now,
            updated_at=now,
            blocked=[resolved(spec, inputs) for spec in specs],
            traffic=traffic,
            git_ref=git_ref,
        )
        self._next_run_id += 1
        self._runs[run.id] = run
        self._emit_run("requested", run)
        self._settle(run, now)
        return run

    def _create_job(self, run: Run, spec: JobSpec, now: float) -> Job:
        job = Job(
            id=self._next_job_id,
            run_id=run.id,
            labels=list(spec.runs_on),
            created_at=now,
            name=spec.name,
            status="pending",
            environment=spec.environment,
            hosted=spec.hosted,
            duration=spec.duration,
            outcome=spec.outcome,
        )
        self._next_job_id += 1
        self._jobs[job.id] = job
        run.job_ids.append(job.id)
        return job

    def _start(self, job: Job, runner_id: int, runner_name: str, now: float) -> None:
        super()._start(job, runner_id, runner_name, now)
        self.check_out(job, self._runs[job.run_id], now)

    def _release(self, job: Job, now: float) -> None:
        """The job's needs are met: it is queued for a runner and GitHub says so,
        unless its environment's protection rules hold it (``waiting``)."""
        self._active_jobs[job.id] = job
        if self._held(job, job.environment, now):
            return
        job.status = "queued"
        job.created_at = now
        self._emit_job("queued", job)

    def _held(self, job: Job, environment: str | None, now: float) -> bool:
        """Whether a protection rule holds the job (the environments mixin decides)."""
        return False

    def _settle(self, run: Run, now: float) -> None:
        """Create the jobs whose needs are decided; complete the run when all are done."""
        progressed = True
        while progressed and run.blocked:
            progressed = False
            by_name = {self._jobs[i].name: self._jobs[i] for i in run.job_ids}
            for spec in list(run.blocked):
                needed = [by_name.get(name) for name in spec.needs]
                if any(job is None or job.active for job in needed):
                    continue
                run.blocked.remove(spec)
                progressed = True
                job = self._create_job(run, spec, now)
                if run.cancelled or any(j.conclusion != "success" for j in needed if j):
                    self._skip(job, now)
                else:
                    self._release(job, now)
        if run.blocked or run.status == "completed":
            return
        jobs = [self._jobs[i] for i in run.job_ids]
        if any(job.active for job in jobs):
            return
        conclusions = {job.conclusion for job in jobs}
        if run.cancelled:
            run.conclusion = "cancelled"
        elif "failure" in conclusions:
            run.conclusion = "failure"
        elif "cancelled" in conclusions:
            run.conclusion = "cancelled"
        else:
            run.conclusion = "success"
        run.status = "completed"
        run.updated_at = now
        self._emit_run("completed", run)

    def _skip(self, job: Job, now: float) -> None:
        job.status = "completed"
        job.conclusion = "skipped"
        job.started_at = job.completed_at = now
        job.note = "skipped: a job it needs did not succeed"
        self._emit_job("completed", job)

    def get_run(self, full_name: str, run_id: int) -> Run:
        run = self._runs.get(run_id)
        if run is None or run.repository != full_name:
            raise not_found()
        return run

    def run_by_id(self, run_id: int) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            raise ApiError(404, f"No run {run_id}")
        return run

    def get_job(self, full_name: str | None, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None or (
            full_name is not None and self._runs[job.run_id].repository != full_name
        ):
            raise not_found()
        return job

    def run_jobs(self, run: Run) -> list[Job]:
        """The jobs of a run GitHub lists: created ones, in creation order."""
        with self.lock:
            return [self._jobs[i] for i in run.job_ids]

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
        """Cancel every job of the run; jobs still blocked on needs are skipped."""
        with self.lock:
            run = self.get_run(full_name, run_id)
            if run.status == "completed":
                raise ApiError(409, "Cannot cancel a workflow run that is completed.")
            now = self.clock.now()
            run.cancelled = True
            for job in self.run_jobs(run):
                self._cancel_job(job, now, force)
            self._settle(run, now)

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
                "environment": job.environment,
                "hosted": job.hosted,
                "lease_expires_at": _iso_or_none(job.lease_expires_at),
                "cancel_at": _iso_or_none(job.cancel_at),
                "finish_at": _iso_or_none(job.finish_at),
                "run_display_title": run.display_title,
                "traffic": run.traffic,
            }

    def run_view(self, run: Run) -> dict[str, Any]:
        """A run as the control API shows it: its jobs, and those blocked on needs."""
        with self.lock:
            return {
                "id": run.id,
                "status": run.status,
                "conclusion": run.conclusion,
                "display_title": run.display_title,
                "traffic": run.traffic,
                "jobs": [self.job_view(job) for job in self.run_jobs(run)],
                "blocked": [spec.as_dict() for spec in run.blocked],
            }


def _iso_or_none(epoch: float | None) -> str | None:
    return None if epoch is None else isoformat(epoch)
