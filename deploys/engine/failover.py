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
from deploys import enqueue
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
from runners.models import Runner, State

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
       acknowledges a cancel). When the attempt's runner is already known dead
       (:func:`runner_dead`), force-cancel at once: waiting for a plain cancel
       would only delay the failover. An accepted force-cancel is final.
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
    dead = runner_dead(attempt.runner, now)
    try:
        if dead:
            gw.force_cancel_run(run_id)
            DeployAttempt.objects.filter(pk=attempt.pk).update(force_cancelled_at=now)
            event(
                run,
                Kind.FORCE_CANCEL_SENT,
                f"force-cancelled GitHub run {run_id} at once: {dead}",
                now,
                attempt=attempt,
            )
            return True
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


def wake_on_fallen_runners(now: datetime) -> int:
    """A health sweep at ``now`` moved runners: advance at once every deploy whose
    attempt in flight is on a runner that fell to unhealthy in that sweep, so its
    failover starts now rather than at the deploy's next poll (which webhook-first
    tracking makes rare, and no webhook tells of a dead host). Returns how many.

    The deadline moves to ``now`` too, so a lost message only waits for the
    reconciler.
    """
    ids = list(
        DeployAttempt.objects.exclude(state__in=DeployAttempt.FINAL_STATES)
        .filter(
            runner__state=State.UNHEALTHY,
            runner__state_since=now,
            run__state__in=[DeployRun.State.DISPATCHING, DeployRun.State.RUNNING],
        )
        .values_list("run_id", flat=True)
        .distinct()
    )
    if not ids:
        return 0
    DeployRun.objects.filter(pk__in=ids).exclude(
        state__in=DeployRun.FINAL_STATES
    ).update(next_check_at=now)
    for pk in ids:
        enqueue.advance(pk)
    return len(ids)


def runner_dead(runner: Runner, now: datetime) -> str:
    """Why the runner can no longer acknowledge a cancel, in words ("": it may).

    Unhealthy (its heartbeat stopped, or another signal failed), gone from GitHub,
    or offline in a fresh GitHub reading: a plain cancel reaches a job only through
    its runner, so on such a runner only a force-cancel stops the run.
    """
    if runner.removed_at is not None:
        return f"{runner.name} is gone from GitHub"
    if runner.state == State.UNHEALTHY:
        return f"{runner.name} is unhealthy"
    if runner.github_status == "offline" and runner.github_is_fresh(now):
        return f"{runner.name} is offline in GitHub"
    return ""


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
