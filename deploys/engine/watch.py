"""running → succeeded | failed, or failover: poll the attempt's job, note its
pickup, and judge how it ended."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction

from controlplane.github import GitHubError, JobInfo
from deploys.engine.common import (
    Attempt,
    Kind,
    Run,
    event,
    finish,
    next_attempt,
    observed_jobs,
    poll,
    recheck,
)
from deploys.engine.dispatch import recover_dispatch
from deploys.engine.failover import continue_failover, start_failover
from deploys.models import DeployAttempt, DeployRun
from runners.models import Runner, State

log = logging.getLogger(__name__)


def _runner_down(runner: Runner) -> bool:
    """The attempt's runner can no longer be trusted with the job."""
    return runner.state == State.UNHEALTHY or runner.removed_at is not None


def _deploy_job(jobs: list[JobInfo], runner_name: str) -> JobInfo | None:
    """The deploy job of a run: the one aimed at the runner's label, else the first."""
    for job in jobs:
        if runner_name in job.labels:
            return job
    return jobs[0] if jobs else None


def running(run: DeployRun, now: datetime) -> bool:
    attempt = run.current_attempt()
    if attempt is None:
        return False
    if attempt.state == Attempt.CANCELLING:
        return continue_failover(run, attempt, now)
    if attempt.github_run_id is None:
        return recover_dispatch(run, attempt, now)
    runner = Runner.objects.get(pk=attempt.runner_id)
    try:
        jobs = observed_jobs(run, attempt, now)
    except GitHubError as exc:
        log.warning("polling deploy %s failed: %s", run.pk, exc)
        recheck(run, now + poll())
        return False
    job = _deploy_job(jobs, runner.name)
    if job is None or job.status in ("queued", "waiting", "pending", "requested"):
        if _runner_down(runner):
            return start_failover(
                run,
                attempt,
                DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
                f"{runner.name} turned {runner.state} before picking the job up",
                now,
            )
        deadline = (attempt.dispatched_at or now) + timedelta(
            seconds=run.environment.pickup_timeout
        )
        if now >= deadline:
            return start_failover(
                run,
                attempt,
                DeployAttempt.FailoverReason.PICKUP_TIMEOUT,
                f"{runner.name} did not pick the job up within "
                f"{run.environment.pickup_timeout} s",
                now,
            )
        recheck(run, min(now + poll(), deadline))
        return False
    if job.runner_name and job.runner_name != runner.name:
        return _wrong_runner(run, attempt, job, now)
    progressed = _note_pickup(run, attempt, job, now)
    if job.status != "completed":
        if _runner_down(runner):
            return start_failover(
                run,
                attempt,
                DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
                f"{runner.name} turned {runner.state} while running the job",
                now,
            )
        recheck(run, now + poll())
        return progressed
    return _job_completed(run, attempt, job, now)


def _note_pickup(
    run: DeployRun, attempt: DeployAttempt, job: JobInfo, now: datetime
) -> bool:
    if attempt.picked_up_at is not None or not job.runner_name:
        return False
    with transaction.atomic():
        moved = DeployAttempt.objects.filter(
            pk=attempt.pk, picked_up_at__isnull=True, state=Attempt.DISPATCHED
        ).update(
            picked_up_at=now, job_runner_name=job.runner_name, state=Attempt.RUNNING
        )
        if moved:
            waited = (now - (attempt.dispatched_at or now)).total_seconds()
            event(
                run,
                Kind.PICKED_UP,
                f"{job.runner_name} picked the job up after {waited:.0f} s",
                now,
                attempt=attempt,
                runner=job.runner_name,
                pickup_seconds=round(waited, 3),
                job_id=job.id,
            )
    return bool(moved)


def _job_completed(
    run: DeployRun, attempt: DeployAttempt, job: JobInfo, now: datetime
) -> bool:
    conclusion = job.conclusion or ""
    if conclusion == "success":
        return finish(
            run,
            Run.SUCCEEDED,
            "",
            f"deployed by {job.runner_name or attempt.runner.name}",
            now,
            attempt=attempt,
            attempt_state=Attempt.SUCCEEDED,
            conclusion=conclusion,
        )
    if job.is_infrastructure_failure:
        return next_attempt(
            run,
            attempt,
            now,
            DeployAttempt.FailoverReason.INFRASTRUCTURE,
            f"the job ended {conclusion} with no failed step "
            f"(runner {job.runner_name or attempt.runner.name} lost or shut down)",
            conclusion=conclusion,
        )
    failed = job.failed_step
    detail = f"step {failed.name!r} failed" if failed else f"job ended {conclusion}"
    # A genuine failure fails fast: the deploy itself is broken, another runner
    # would fail the same way (or do harm).
    return finish(
        run,
        Run.FAILED,
        DeployRun.Reason.DEPLOY_FAILED,
        detail,
        now,
        attempt=attempt,
        attempt_state=Attempt.FAILED,
        conclusion=conclusion,
    )


def _wrong_runner(
    run: DeployRun, attempt: DeployAttempt, job: JobInfo, now: datetime
) -> bool:
    """The job landed on a runner that was not chosen: stop it and fail the run."""
    DeployAttempt.objects.filter(
        pk=attempt.pk, cancel_requested_at__isnull=True
    ).update(cancel_requested_at=now, job_runner_name=job.runner_name or "")
    return finish(
        run,
        Run.FAILED,
        DeployRun.Reason.WRONG_RUNNER,
        f"the job ran on {job.runner_name}, not on {attempt.runner.name}: check that "
        "the runner's name is a label no other runner carries",
        now,
        attempt=attempt,
        cleanup=True,
    )
