"""running → succeeded | failed, or failover: poll the attempt's job, note its
pickup, and judge how it ended."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction

from controlplane.github import GitHubError, JobInfo, gateway_for
from deploys.engine import approval
from deploys.engine.commits import check_head_sha
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


# Statuses of a listed job that GitHub has not yet handed to any runner: ``waiting`` is
# a protection rule holding it, the others are GitHub still setting it up.
NOT_YET_QUEUED = ("waiting", "pending", "requested")


def _pinned_job(jobs: list[JobInfo], runner_name: str) -> JobInfo | None:
    """The run's job pinned to the chosen runner: its runs-on carries the runner's
    name (a label). None while GitHub has not created it (its ``needs`` still run)."""
    wanted = runner_name.casefold()
    for job in jobs:
        if wanted in (label.casefold() for label in job.labels):
            return job
    return None


def _failed_job(jobs: list[JobInfo], pinned: JobInfo | None) -> JobInfo | None:
    """Another job of the run that ended without success (the run fails with it)."""
    for job in jobs:
        if job is pinned or job.active:
            continue
        if job.conclusion not in ("success", "skipped", "neutral"):
            return job
    return None


def _describe(job: JobInfo) -> tuple[str, dict[str, str]]:
    """What went wrong in a job, for the deploy's message and its final event."""
    failed = job.failed_step
    if failed is not None:
        return f"job {job.name!r} failed at step {failed.name!r}", {
            "job": job.name,
            "step": failed.name,
        }
    return f"job {job.name!r} ended {job.conclusion}", {"job": job.name}


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
    job = _pinned_job(jobs, runner.name)
    if approval.held(run, attempt, job, now):
        return False
    if job is None or job.status in NOT_YET_QUEUED:
        return _blocked(run, attempt, runner, jobs, job, now)
    if job.status == "queued":
        return _awaiting_pickup(run, attempt, runner, jobs, job, now)
    if job.runner_name and job.runner_name != runner.name:
        return _wrong_runner(run, attempt, job, now)
    if job.status == "completed" and job.conclusion == "skipped":
        # Never ran: a job it needs did not succeed (a failed build).
        return _run_failed(run, attempt, jobs, job, now)
    if (verdict := check_head_sha(run, attempt, job, now)) is not None:
        return verdict
    progressed = _note_pickup(run, attempt, jobs, job, now)
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
    return _job_completed(run, attempt, jobs, job, now) or progressed


def _blocked(
    run: DeployRun,
    attempt: DeployAttempt,
    runner: Runner,
    jobs: list[JobInfo],
    job: JobInfo | None,
    now: datetime,
) -> bool:
    """The pinned job is not queued for a runner yet: the jobs it needs still run, or
    a protection rule holds it. No pickup clock runs; a failed job fails the deploy
    at once, a runner gone bad sends the deploy to the next runner at once."""
    failed = _failed_job(jobs, job)
    if failed is not None:
        return _run_failed(run, attempt, jobs, job, now)
    if _runner_down(runner):
        doing = ", ".join(f"{j.name} {j.status}" for j in jobs) or "starting"
        return start_failover(
            run,
            attempt,
            DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
            f"{runner.name} turned {runner.state} before picking the job up "
            f"(the run: {doing})",
            now,
        )
    if job is None and jobs and not any(j.active for j in jobs):
        return _no_pinned_job(run, attempt, runner, now)
    DeployAttempt.objects.filter(pk=attempt.pk).update(job_blocked_at=now)
    recheck(run, now + poll())
    return False


def _pickup_clock_start(
    attempt: DeployAttempt, jobs: list[JobInfo], job: JobInfo, now: datetime
) -> datetime:
    """When the pinned job was queued for a runner, in the control plane's time.

    GitHub creates the job once the jobs it needs succeeded: its creation, counted
    from the run's first job (dispatched at ``dispatched_at``), says when, free of any
    clock skew with GitHub. The last time it was seen still blocked is a floor (a
    protection rule's wait does not show in its creation time)."""
    start = attempt.dispatched_at or now
    created = [j.created_at for j in jobs if j.created_at is not None]
    if job.created_at is not None and created:
        start += job.created_at - min(created)
    if attempt.job_blocked_at is not None:
        start = max(start, attempt.job_blocked_at)
    return start


def _awaiting_pickup(
    run: DeployRun,
    attempt: DeployAttempt,
    runner: Runner,
    jobs: list[JobInfo],
    job: JobInfo,
    now: datetime,
) -> bool:
    if _runner_down(runner):
        return start_failover(
            run,
            attempt,
            DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
            f"{runner.name} turned {runner.state} before picking the job up",
            now,
        )
    timeout = run.timeout("pickup_timeout")
    deadline = _pickup_clock_start(attempt, jobs, job, now) + timedelta(seconds=timeout)
    if now >= deadline:
        return start_failover(
            run,
            attempt,
            DeployAttempt.FailoverReason.PICKUP_TIMEOUT,
            f"{runner.name} did not pick the job up within {timeout} s",
            now,
        )
    recheck(run, min(now + poll(), deadline))
    return False


def _no_pinned_job(
    run: DeployRun, attempt: DeployAttempt, runner: Runner, now: datetime
) -> bool:
    """Every listed job ended and none runs on the runner: once GitHub says the run
    is over, the workflow never targets the chosen runner."""
    try:
        info = gateway_for(run.environment.repository).get_run(
            attempt.github_run_id or 0
        )
    except GitHubError as exc:
        log.warning("reading GitHub run of deploy %s failed: %s", run.pk, exc)
        recheck(run, now + poll())
        return False
    if info.status != "completed":
        recheck(run, now + poll())
        return False
    return finish(
        run,
        Run.FAILED,
        DeployRun.Reason.WRONG_RUNNER,
        f"no job of the GitHub run ran on {runner.name}: the deploy job's runs-on "
        "must carry the runner input ([self-hosted, ${{ inputs.runner }}])",
        now,
        attempt=attempt,
        attempt_state=Attempt.FAILED,
        conclusion=info.conclusion or "",
    )


def _run_failed(
    run: DeployRun,
    attempt: DeployAttempt,
    jobs: list[JobInfo],
    job: JobInfo | None,
    now: datetime,
) -> bool:
    """Another job of the run failed: the deploy fails with it, no failover (another
    runner would build or test the same thing). What still runs is cancelled."""
    failed = _failed_job(jobs, job)
    message, detail = (
        _describe(failed) if failed else ("a job it needs did not succeed", {})
    )
    still_running = any(j.active for j in jobs)
    return finish(
        run,
        Run.FAILED,
        DeployRun.Reason.DEPLOY_FAILED,
        message,
        now,
        attempt=attempt,
        attempt_state=None if still_running else Attempt.FAILED,
        conclusion=failed.conclusion or "" if failed else "",
        cleanup=still_running,
        detail=detail,
    )


def _note_pickup(
    run: DeployRun,
    attempt: DeployAttempt,
    jobs: list[JobInfo],
    job: JobInfo,
    now: datetime,
) -> bool:
    if attempt.picked_up_at is not None or not job.runner_name:
        return False
    first_created = min(
        (j.created_at for j in jobs if j.created_at is not None),
        default=job.created_at,
    )
    with transaction.atomic():
        moved = DeployAttempt.objects.filter(
            pk=attempt.pk, picked_up_at__isnull=True, state=Attempt.DISPATCHED
        ).update(
            picked_up_at=now, job_runner_name=job.runner_name, state=Attempt.RUNNING
        )
        if moved:
            waited = (now - (attempt.dispatched_at or now)).total_seconds()
            message = f"{job.runner_name} picked the job up after {waited:.0f} s"
            queued: dict[str, float] = {}
            if (
                job.created_at
                and job.started_at
                and first_created
                and job.created_at > first_created
            ):
                # The job was created late (it needed others): say how long it
                # waited for a runner, by GitHub's own clock.
                in_queue = (job.started_at - job.created_at).total_seconds()
                message += f" ({in_queue:.0f} s after it was queued)"
                queued = {"queued_seconds": round(in_queue, 3)}
            event(
                run,
                Kind.PICKED_UP,
                message,
                now,
                attempt=attempt,
                runner=job.runner_name,
                pickup_seconds=round(waited, 3),
                job_id=job.id,
                **queued,
            )
    return bool(moved)


def _job_completed(
    run: DeployRun,
    attempt: DeployAttempt,
    jobs: list[JobInfo],
    job: JobInfo,
    now: datetime,
) -> bool:
    """The pinned job ended: the deploy's result is the run's."""
    conclusion = job.conclusion or ""
    if conclusion == "success":
        return _deployed(run, attempt, jobs, job, now)
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
    message, detail = _describe(job)
    if len(jobs) == 1:
        failed = job.failed_step
        message = f"step {failed.name!r} failed" if failed else message
    # A genuine failure fails fast: the deploy itself is broken, another runner
    # would fail the same way (or do harm).
    return finish(
        run,
        Run.FAILED,
        DeployRun.Reason.DEPLOY_FAILED,
        message,
        now,
        attempt=attempt,
        attempt_state=Attempt.FAILED,
        conclusion=conclusion,
        detail=detail,
    )


def _deployed(
    run: DeployRun,
    attempt: DeployAttempt,
    jobs: list[JobInfo],
    job: JobInfo,
    now: datetime,
) -> bool:
    """The pinned job succeeded; the jobs after it (smoke tests) decide the rest."""
    failed = _failed_job(jobs, job)
    if failed is None and any(j.active for j in jobs):
        recheck(run, now + poll())
        return False
    if failed is None and len(jobs) > 1:
        # Jobs that need the deploy job are created after it ends: only the run
        # itself says whether any are still to come.
        try:
            info = gateway_for(run.environment.repository).get_run(job.run_id)
        except GitHubError as exc:
            log.warning("reading GitHub run of deploy %s failed: %s", run.pk, exc)
            recheck(run, now + poll())
            return False
        if info.status != "completed":
            recheck(run, now + poll())
            return False
        if info.conclusion != "success":
            # A job was created and ended between the two reads: find it.
            try:
                jobs = gateway_for(run.environment.repository).list_run_jobs(job.run_id)
            except GitHubError:
                recheck(run, now + poll())
                return False
            failed = _failed_job(jobs, job)
            if failed is None:
                return finish(
                    run,
                    Run.FAILED,
                    DeployRun.Reason.DEPLOY_FAILED,
                    f"the GitHub run ended {info.conclusion} after the deploy job",
                    now,
                    attempt=attempt,
                    attempt_state=Attempt.FAILED,
                    conclusion=info.conclusion or "",
                )
    if failed is not None:
        message, detail = _describe(failed)
        return finish(
            run,
            Run.FAILED,
            DeployRun.Reason.DEPLOY_FAILED,
            f"{message} after the deploy job succeeded on "
            f"{job.runner_name or attempt.runner.name}",
            now,
            attempt=attempt,
            attempt_state=Attempt.FAILED,
            conclusion=failed.conclusion or "",
            cleanup=any(j.active for j in jobs),
            detail=detail,
        )
    return finish(
        run,
        Run.SUCCEEDED,
        "",
        f"deployed by {job.runner_name or attempt.runner.name}",
        now,
        attempt=attempt,
        attempt_state=Attempt.SUCCEEDED,
        conclusion="success",
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
