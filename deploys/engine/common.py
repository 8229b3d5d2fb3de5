"""What every phase of the engine shares: GitHub access, timeline events, deadlines,
and the two ways an attempt ends (the run finishes, or goes back to the gate)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from controlplane.github import GitHubError, JobInfo, gateway_for
from deploys.jobrecords import record_job
from deploys.models import DeployAttempt, DeployEvent, DeployRun, WorkflowJob

Run = DeployRun.State
Attempt = DeployAttempt.State
Kind = DeployEvent.Kind

# The inputs of every dispatch, which the reference workflows (deploys/workflows/)
# declare: GitHub refuses a dispatch that sends an input the workflow does not
# declare or leaves out a required one. All are required but ``ticket`` (the change
# ticket, "" for a deploy without one), which the run's name shows.
DISPATCH_INPUTS = ("runner", "token", "sha", "environment", "ticket")
# The inputs a deploy can do without when a team's copy of the workflow predates
# them (deploys/engine/inputs.py sends the dispatch again without them), each with
# what is lost. The others are essential: ``runner`` pins the deploy job to the
# runner the gate chose, ``token`` finds the run again after a lost answer, ``sha``
# is the exact commit deployed and ``environment`` brings the GitHub environment's
# secrets and protection rules.
OPTIONAL_INPUTS: dict[str, str] = {
    # Only names the run in GitHub's run list ("Deploy main INFRA-473 [token]"); the
    # deploy, its correlation and the ticket's JIRA comments work without it.
    "ticket": "the change ticket is not shown in the run's name",
}


def poll() -> timedelta:
    """How often a deploy in flight is looked at (its timers, its runner, its jobs)."""
    return timedelta(seconds=settings.DEPLOY_POLL_INTERVAL)


# Webhook-first tracking -----------------------------------------------------------------


def webhooks_flowing(attempt: DeployAttempt, now: datetime) -> bool:
    """A webhook about the attempt's run was applied recently."""
    seen = attempt.webhook_seen_at
    quiet = timedelta(seconds=settings.DEPLOY_WEBHOOK_QUIET_AFTER)
    return seen is not None and now - seen <= quiet


def github_poll_interval(attempt: DeployAttempt, now: datetime) -> timedelta:
    """How often GitHub is asked about the attempt's jobs: slower while webhooks
    for its run keep arriving (they are the fast path), normal once they stop."""
    if webhooks_flowing(attempt, now):
        return poll() * settings.DEPLOY_POLL_SLOWDOWN
    return poll()


def poll_due(attempt: DeployAttempt, now: datetime) -> bool:
    """Nothing was heard of the run, by webhook or poll, for a poll interval since
    it was dispatched (a run just dispatched is known: its job waits in the queue)."""
    heard = [
        t
        for t in (attempt.dispatched_at, attempt.polled_at, attempt.webhook_seen_at)
        if t is not None
    ]
    return not heard or now - max(heard) >= github_poll_interval(attempt, now)


def observed_jobs(
    run: DeployRun, attempt: DeployAttempt, now: datetime
) -> list[JobInfo]:
    """The jobs of the attempt's GitHub run, webhook-first.

    1. When a poll is due (:func:`poll_due`), ask GitHub, conditional on the ETag of
       the last answer (an unchanged list answers 304, which costs no budget), and
       record what it says as a webhook would have.
    2. Answer from the job records that webhooks and polls keep, newest state of
       each job (a webhook just applied is fresher than any poll).

    A failed poll raises :class:`GitHubError`, unless webhooks are flowing for the
    run: then their facts stand and the poll is tried again at its next interval.
    """
    github_run_id = attempt.github_run_id
    assert github_run_id is not None
    if poll_due(attempt, now):
        poll_jobs(run, attempt, now)
    return [
        job.as_info()
        for job in WorkflowJob.objects.filter(run_id=github_run_id).order_by(
            "github_id"
        )
    ]


def poll_jobs(run: DeployRun, attempt: DeployAttempt, now: datetime) -> None:
    """Ask GitHub for the attempt's jobs now and record them as a webhook would have
    (:func:`observed_jobs` step 1; also when a recorded job is known to be stale)."""
    github_run_id = attempt.github_run_id
    assert github_run_id is not None
    try:
        answer = gateway_for(run.environment.repository).list_run_jobs_if_changed(
            github_run_id, attempt.jobs_etag or None
        )
    except GitHubError:
        if not webhooks_flowing(attempt, now):
            raise
        answer = None
    with transaction.atomic():
        for job in answer.jobs if answer else ():
            record_job(WorkflowJob.payload_from_info(job, now))
        fields: dict[str, Any] = {"polled_at": now}
        if answer is not None:
            fields["jobs_etag"] = (answer.etag or "")[:200]
        DeployAttempt.objects.filter(pk=attempt.pk).update(**fields)
    attempt.polled_at = now


# Timeline and deadlines -----------------------------------------------------------------


def event(
    run: DeployRun,
    kind: str,
    message: str,
    now: datetime,
    *,
    attempt: DeployAttempt | None = None,
    **detail: Any,
) -> DeployEvent:
    return DeployEvent.objects.create(
        run=run,
        attempt=attempt,
        kind=kind,
        message=message[:500],
        detail=detail,
        created_at=now,
    )


def recheck(run: DeployRun, at: datetime) -> None:
    DeployRun.objects.filter(pk=run.pk).exclude(
        state__in=DeployRun.FINAL_STATES
    ).update(next_check_at=at)


def finish(
    run: DeployRun,
    state: str,
    reason: str,
    message: str,
    now: datetime,
    *,
    attempt: DeployAttempt | None = None,
    attempt_state: str | None = None,
    conclusion: str = "",
    cleanup: bool = False,
    detail: dict[str, Any] | None = None,
) -> bool:
    """:meth:`DeployRun.finish`, with the reason (and ``detail``) on the final
    event, as every run the engine ends has."""
    return run.finish(
        state,
        reason,
        message,
        now,
        attempt=attempt,
        attempt_state=attempt_state,
        conclusion=conclusion,
        cleanup=cleanup,
        detail={"reason": reason, **(detail or {})},
    )


def next_attempt(
    run: DeployRun,
    attempt: DeployAttempt,
    now: datetime,
    reason: str,
    message: str,
    *,
    state: str = Attempt.FAILED,
    conclusion: str = "",
) -> bool:
    """Close the attempt and send the run back to the gate, or fail it when it has
    used every attempt."""
    env = run.environment
    fields: dict[str, Any] = {
        "state": state,
        "finished_at": now,
        "failover_reason": reason,
    }
    if conclusion:
        fields["conclusion"] = conclusion
    with transaction.atomic():
        DeployAttempt.objects.filter(pk=attempt.pk).exclude(
            state__in=DeployAttempt.FINAL_STATES
        ).update(**fields)
        if message:
            event(
                run,
                Kind.FAILOVER,
                message,
                now,
                attempt=attempt,
                reason=reason,
                runner=attempt.runner.name,
            )
        if run.attempts.count() >= env.max_attempts:
            return finish(
                run,
                Run.FAILED,
                DeployRun.Reason.MAX_ATTEMPTS,
                f"all {env.max_attempts} attempts failed over (last: {reason})",
                now,
            )
        moved = DeployRun.objects.filter(
            pk=run.pk, state__in=[Run.DISPATCHING, Run.RUNNING]
        ).update(state=Run.GATING, gate_started_at=now, next_check_at=now)
    return bool(moved)
