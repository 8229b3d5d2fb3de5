"""A deploy whose job waits on its GitHub environment's protection rules.

Required reviewers and wait timers hold the job as ``waiting`` before any runner may
take it. That is not a runner problem: no pickup clock runs and nothing fails over.
The deploy says what it waits for (the reviewers from ``pending_deployments``, or
when the wait timer ends) on its timeline, and has its own deadline, the
environment's ``approval_timeout``: past it the deploy fails (``approval_timeout``)
and its GitHub run is cancelled. A rejection in GitHub fails the deploy
(``rejected_in_github``) naming who. Once the rules pass, the watch's pickup clock
starts. SREs who are reviewers can approve or reject from here (:func:`review`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from controlplane import audit
from controlplane.github import (
    GitHubError,
    GitHubValidationError,
    JobInfo,
    PendingDeployment,
    gateway_for,
)
from deploys import enqueue
from deploys.engine.common import (
    Attempt,
    Kind,
    Run,
    event,
    finish,
    poll,
    poll_jobs,
    recheck,
)
from deploys.models import DeployAttempt, DeployEvent, DeployRun, WorkflowJob
from runners.models import State

log = logging.getLogger(__name__)


def held(
    run: DeployRun, attempt: DeployAttempt, job: JobInfo | None, now: datetime
) -> bool:
    """Whether protection rules account for the pinned job's state now; the watch
    stops here when True (the run has its next deadline).

    A runner gone bad is the watch's to handle even while the job is held: it fails
    over at once, and the new run waits for its own approval."""
    if job is None:
        return False
    if job.status == "waiting":
        if _runner_down(attempt):
            return False
        # The pickup clock starts no earlier than the last time the job was held.
        DeployAttempt.objects.filter(pk=attempt.pk).update(job_blocked_at=now)
        return _waiting(run, attempt, job, now)
    if (
        job.status == "completed"
        and job.conclusion == "failure"
        and not job.runner_name
    ):
        return _maybe_rejected(run, attempt, job, now)
    _note_passed(run, attempt, now)
    return False


def describe(pending: list[PendingDeployment]) -> str:
    """ "waiting for approval in GitHub: required reviewers …" and/or the timer."""
    parts: list[str] = []
    reviewers = sorted({r for p in pending for r in p.reviewers})
    if reviewers:
        parts.append("required reviewers " + ", ".join(reviewers))
    until = [p.wait_until for p in pending if p.wait_until is not None]
    if until:
        parts.append(f"wait timer until {max(until):%Y-%m-%d %H:%M:%S} UTC")
    if not parts:
        return "waiting for approval in GitHub"
    return "waiting for approval in GitHub: " + "; ".join(parts)


def waiting_since(attempt: DeployAttempt) -> DeployEvent | None:
    return (
        DeployEvent.objects.filter(attempt=attempt, kind=Kind.APPROVAL_WAITING)
        .order_by("created_at", "pk")
        .first()
    )


def _waiting(
    run: DeployRun, attempt: DeployAttempt, job: JobInfo, now: datetime
) -> bool:
    assert attempt.github_run_id is not None
    try:
        pending = gateway_for(run.environment.repository).pending_deployments(
            attempt.github_run_id
        )
        if not pending and _hold_ended(run, attempt, job, now):
            return True
    except GitHubError as exc:
        log.warning("reading the approvals of deploy %s failed: %s", run.pk, exc)
        recheck(run, now + poll())
        return True
    message = describe(pending)
    first = waiting_since(attempt)
    last = (
        DeployEvent.objects.filter(attempt=attempt, kind=Kind.APPROVAL_WAITING)
        .order_by("-created_at", "-pk")
        .first()
    )
    if last is None or last.message != message:
        event(
            run,
            Kind.APPROVAL_WAITING,
            message,
            now,
            attempt=attempt,
            environments=[p.environment for p in pending],
            reviewers=sorted({r for p in pending for r in p.reviewers}),
            wait_until=_iso(
                max((p.wait_until for p in pending if p.wait_until), default=None)
            ),
            can_approve=any(p.current_user_can_approve for p in pending),
        )
    started = first.created_at if first is not None else now
    approval_timeout = run.timeout("approval_timeout")
    deadline = started + timedelta(seconds=approval_timeout)
    if now >= deadline:
        DeployAttempt.objects.filter(
            pk=attempt.pk, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now)
        finish(
            run,
            Run.FAILED,
            DeployRun.Reason.APPROVAL_TIMEOUT,
            f"not approved in GitHub within {approval_timeout} s "
            f"({message.removeprefix('waiting for approval in GitHub: ')})",
            now,
            # The attempt stays open: the engine's final step cancels its run.
            attempt=attempt,
            cleanup=True,
        )
        return True
    wake = [now + poll(), deadline]
    wake += [p.wait_until for p in pending if p.wait_until and p.wait_until > now]
    recheck(run, min(wake))
    return True


def _hold_ended(
    run: DeployRun, attempt: DeployAttempt, job: JobInfo, now: datetime
) -> bool:
    """GitHub lists nothing pending, yet the job was last recorded ``waiting``: the
    record is stale (approved, or the wait timer ended, since the webhook or poll
    that wrote it). Read the jobs again now; True when the job is no longer
    waiting (the next look follows it at once)."""
    poll_jobs(run, attempt, now)
    if WorkflowJob.objects.filter(github_id=job.id, status="waiting").exists():
        return False
    recheck(run, now)
    return True


def _maybe_rejected(
    run: DeployRun, attempt: DeployAttempt, job: JobInfo, now: datetime
) -> bool:
    """A job that failed before any runner took it: rejected in GitHub?"""
    assert attempt.github_run_id is not None
    try:
        reviews = gateway_for(run.environment.repository).run_reviews(
            attempt.github_run_id
        )
    except GitHubError as exc:
        log.warning("reading the reviews of deploy %s failed: %s", run.pk, exc)
        recheck(run, now + poll())
        return True
    rejected = [r for r in reviews if r.state == "rejected"]
    if not rejected:
        return False
    who = rejected[-1]
    said = f": {who.comment}" if who.comment else ""
    finish(
        run,
        Run.FAILED,
        DeployRun.Reason.REJECTED_IN_GITHUB,
        f"rejected in GitHub by {who.user}{said}",
        now,
        attempt=attempt,
        attempt_state=Attempt.FAILED,
        conclusion=job.conclusion or "",
        detail={"by": who.user, "comment": who.comment},
    )
    return True


def _note_passed(run: DeployRun, attempt: DeployAttempt, now: datetime) -> None:
    """Note once that the attempt's held job was let go."""
    if waiting_since(attempt) is None:
        return
    if DeployEvent.objects.filter(attempt=attempt, kind=Kind.APPROVED).exists():
        return
    with transaction.atomic():
        event(
            run,
            Kind.APPROVED,
            f"GitHub's protection rules passed: the job is queued for "
            f"{attempt.runner.name}",
            now,
            attempt=attempt,
        )


def _runner_down(attempt: DeployAttempt) -> bool:
    runner = attempt.runner
    return runner.state == State.UNHEALTHY or runner.removed_at is not None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# Reviews from the control plane ----------------------------------------------------


@dataclass
class ReviewRefused(Exception):
    """Why a review could not be sent, with the HTTP status to answer."""

    status: int
    detail: str
    code: str

    def __str__(self) -> str:
        return self.detail


def review(run: DeployRun, actor: audit.Actor, state: str, comment: str) -> None:
    """Approve or reject the deploy's waiting job in GitHub as the control plane's
    GitHub user, with the SRE's name in the comment (audited)."""
    name = audit.actor_name(actor)
    attempt = run.current_attempt()
    if run.state != Run.RUNNING or attempt is None or attempt.github_run_id is None:
        raise ReviewRefused(
            409, f"the deploy is {run.state}, not waiting for approval", "not_waiting"
        )
    gateway = gateway_for(run.environment.repository)
    try:
        pending = [
            p
            for p in gateway.pending_deployments(attempt.github_run_id)
            if p.needs_review
        ]
    except GitHubError as exc:
        raise ReviewRefused(
            503, f"GitHub could not be asked: {exc}", "github_unavailable"
        ) from None
    if not pending:
        raise ReviewRefused(
            409, "nothing of this deploy waits for a review in GitHub", "not_waiting"
        )
    environments = ", ".join(p.environment for p in pending)
    if not any(p.current_user_can_approve for p in pending):
        raise ReviewRefused(
            403,
            f"GitHub says the control plane's GitHub user may not review deploys to "
            f"{environments} (reviewers: {', '.join(sorted({r for p in pending for r in p.reviewers}))}): "
            "review in GitHub, or make that user a required reviewer",
            "not_a_reviewer",
        )
    note = f"{comment} ({state} by {name} in the runner control plane)".strip()
    try:
        gateway.review_pending_deployments(
            attempt.github_run_id,
            [p.environment_id for p in pending if p.current_user_can_approve],
            state,
            note,
        )
    except GitHubValidationError as exc:
        raise ReviewRefused(
            403, f"GitHub refused the review: {exc.github_message}", "refused"
        ) from None
    except GitHubError as exc:
        raise ReviewRefused(
            503, f"GitHub could not be asked: {exc}", "github_unavailable"
        ) from None
    with transaction.atomic():
        event(
            run,
            Kind.APPROVAL_SENT,
            f"{name} {state} the deploy to {environments} in GitHub"
            + (f": {comment}" if comment else ""),
            timezone.now(),
            attempt=attempt,
            by=name,
            state=state,
            comment=comment,
        )
        audit.record(actor, "deploy.review", run, state=state, comment=comment)
        enqueue.advance_on_commit(run.pk)
