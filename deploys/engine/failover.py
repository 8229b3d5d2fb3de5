"""Stopping a GitHub run that must not deploy: before a failover's next attempt,
and after a run finished with work still going on GitHub."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from controlplane.github import (
    GitHubConflict,
    GitHubError,
    GitHubGateway,
    GitHubNotFound,
    gateway_for,
)
from deploys.engine.common import (
    Attempt,
    Kind,
    event,
    next_attempt,
    poll,
    recheck,
)
from deploys.engine.dispatch import find_run, record_dispatch
from deploys.models import DeployAttempt, DeployRun

log = logging.getLogger(__name__)


def start_failover(
    run: DeployRun, attempt: DeployAttempt, reason: str, message: str, now: datetime
) -> bool:
    """Decide to fail over: the old run is cancelled first, then the next attempt."""
    with transaction.atomic():
        moved = DeployAttempt.objects.filter(
            pk=attempt.pk,
            state__in=[Attempt.PENDING, Attempt.DISPATCHED, Attempt.RUNNING],
        ).update(
            state=Attempt.CANCELLING, failover_reason=reason, cancel_requested_at=now
        )
        if moved:
            event(
                run,
                Kind.FAILOVER,
                message,
                now,
                attempt=attempt,
                reason=reason,
                runner=attempt.runner.name,
            )
    if not moved:
        return False
    attempt.refresh_from_db()
    return continue_failover(run, attempt, now)


def continue_failover(run: DeployRun, attempt: DeployAttempt, now: datetime) -> bool:
    if not stop_github_run(run, attempt, now):
        recheck(run, now + poll())
        return False
    return next_attempt(
        run,
        attempt,
        now,
        attempt.failover_reason,
        "",
        state=Attempt.CANCELLED,
    )


def stop_github_run(run: DeployRun, attempt: DeployAttempt, now: datetime) -> bool:
    """Make sure the attempt's GitHub run can no longer deploy; True once it cannot.

    1. A dispatch never sent cannot deploy; one whose run id is unknown is looked up
       by its token (and given the lookup grace to appear).
    2. A completed run is done.
    3. Otherwise cancel, and force-cancel if the run still goes on
       ``DEPLOY_FORCE_CANCEL_AFTER`` seconds later (a dead runner never
       acknowledges a cancel). An accepted force-cancel is final.
    """
    gw = gateway_for(run.environment.repository)
    if attempt.github_run_id is None:
        if attempt.dispatch_claimed_at is None:
            return True
        try:
            found = find_run(run, attempt)
        except GitHubError:
            return False
        if found is None:
            grace = timedelta(seconds=settings.DEPLOY_DISPATCH_LOOKUP_GRACE)
            return now >= attempt.dispatch_claimed_at + grace
        record_dispatch(run, attempt, now, found.id, found.html_url, recovered=True)
        attempt.refresh_from_db()
    run_id = attempt.github_run_id
    assert run_id is not None
    try:
        info = gw.get_run(run_id)
    except GitHubNotFound:
        return True
    except GitHubError:
        return False
    if info.status == "completed":
        return True
    if attempt.force_cancelled_at is not None:
        return True
    requested = attempt.cancel_requested_at or now
    force_after = timedelta(seconds=settings.DEPLOY_FORCE_CANCEL_AFTER)
    try:
        if attempt.cancel_sent_at is None:
            gw.cancel_run(run_id)
            DeployAttempt.objects.filter(pk=attempt.pk).update(cancel_sent_at=now)
            event(
                run,
                Kind.CANCEL_SENT,
                f"cancelling GitHub run {run_id}",
                now,
                attempt=attempt,
            )
            return _completed(gw, run_id)
        if now >= requested + force_after:
            gw.force_cancel_run(run_id)
            DeployAttempt.objects.filter(pk=attempt.pk).update(force_cancelled_at=now)
            event(
                run,
                Kind.FORCE_CANCEL_SENT,
                f"GitHub run {run_id} ignored the cancel; force-cancelled",
                now,
                attempt=attempt,
            )
            return True
    except GitHubConflict:
        return True  # it completed in the meantime
    except GitHubError as exc:
        log.warning("cancelling GitHub run %s failed: %s", run_id, exc)
    return False


def _completed(gw: GitHubGateway, run_id: int) -> bool:
    try:
        return gw.get_run(run_id).status == "completed"
    except GitHubError:
        return False


def final(run: DeployRun, now: datetime) -> bool:
    """Cancel what a finished run may still have going on GitHub (after a cancel by
    a person, or a job on the wrong runner), then forget the run."""
    if run.next_check_at is None:
        return False
    pending = list(
        run.attempts.exclude(state__in=DeployAttempt.FINAL_STATES).select_related(
            "runner"
        )
    )
    done = True
    for attempt in pending:
        if attempt.cancel_requested_at is None:
            DeployAttempt.objects.filter(pk=attempt.pk).update(cancel_requested_at=now)
            attempt.cancel_requested_at = now
        if stop_github_run(run, attempt, now):
            DeployAttempt.objects.filter(pk=attempt.pk).update(
                state=Attempt.CANCELLED, finished_at=now
            )
        else:
            done = False
    DeployRun.objects.filter(pk=run.pk).update(
        next_check_at=None if done else now + poll()
    )
    return False
