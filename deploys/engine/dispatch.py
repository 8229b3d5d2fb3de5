"""dispatching → running: send the attempt's one dispatch, record the GitHub run it
made, and find that run by its token when the answer was lost."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from controlplane.github import (
    GitHubAmbiguousWrite,
    GitHubError,
    GitHubInputsRefused,
    GitHubRateLimited,
    GitHubUnavailable,
    RunInfo,
    gateway_for,
)
from deploys.engine import inputs
from deploys.engine.common import (
    Attempt,
    Kind,
    Run,
    event,
    finish,
    next_attempt,
    poll,
    recheck,
)
from deploys.models import DeployAttempt, DeployEvent, DeployRun

log = logging.getLogger(__name__)

# Runs created before this margin are not the dispatch we look for.
LOOKUP_MARGIN = timedelta(minutes=10)
LOOKUP_STEP = timedelta(seconds=1)


def match_run_by_token(
    token: str, github_run_id: int, html_url: str, *, now: datetime | None = None
) -> bool:
    """A ``workflow_run`` webhook names an attempt's token: record the attempt's run.

    Lets a dispatch whose answer was lost (or a plain dispatch without run details)
    go on at once instead of after the token lookup's polling. Only a claimed,
    unfinished attempt without a run id takes it; returns whether it did.
    """
    attempt = (
        DeployAttempt.objects.select_related("run__environment", "runner")
        .filter(
            token=token,
            github_run_id__isnull=True,
            dispatch_claimed_at__isnull=False,
        )
        .exclude(state__in=DeployAttempt.FINAL_STATES)
        .first()
    )
    if attempt is None:
        return False
    # The webhook can beat the dispatch's own answer: then this simply is the
    # dispatch. After a lost answer (a retry event), or a dispatch recorded without
    # a run id, the run was found by its token.
    found = DeployEvent.objects.filter(
        attempt=attempt, kind__in=(Kind.DISPATCHED, Kind.DISPATCH_RETRY)
    ).exists()
    record_dispatch(
        attempt.run,
        attempt,
        now or timezone.now(),
        github_run_id,
        html_url,
        recovered=found,
        source="a workflow_run webhook",
    )
    return True


def dispatching(run: DeployRun, now: datetime) -> bool:
    attempt = run.current_attempt()
    if attempt is None:  # cannot happen: the gate creates it with the transition
        return finish(run, Run.FAILED, "", "no attempt to dispatch", now)
    if attempt.github_run_id is not None:
        return _mark_running(run, attempt, now)
    if attempt.dispatch_claimed_at is None:
        claimed = DeployAttempt.objects.filter(
            pk=attempt.pk, dispatch_claimed_at__isnull=True
        ).update(dispatch_claimed_at=now)
        if not claimed:
            return False
        attempt.dispatch_claimed_at = now
        return send_dispatch(run, attempt, now)
    return recover_dispatch(run, attempt, now)


def send_dispatch(run: DeployRun, attempt: DeployAttempt, now: datetime) -> bool:
    """Send the attempt's one dispatch (its claim is already committed)."""
    try:
        result = inputs.dispatch(run, attempt, now)
    except GitHubAmbiguousWrite as exc:
        # It may have created the run: only the token lookup may decide now, and
        # it starts at once (GitHub lists a dispatched run as soon as it exists).
        event(
            run,
            Kind.DISPATCH_RETRY,
            f"dispatch answer lost ({exc}); looking the run up by its token",
            now,
            attempt=attempt,
        )
        return recover_dispatch(run, attempt, now)
    except (GitHubUnavailable, GitHubRateLimited) as exc:
        # The gateway raises these for a dispatch only when GitHub never received
        # it (no connection, or refused by a rate limit): safe to send again.
        with transaction.atomic():
            DeployAttempt.objects.filter(pk=attempt.pk).update(dispatch_claimed_at=None)
            event(
                run,
                Kind.DISPATCH_RETRY,
                f"dispatch not sent ({exc}); trying again",
                now,
                attempt=attempt,
            )
            recheck(run, now + poll())
        return False
    except GitHubInputsRefused as exc:
        # Inputs the deploy cannot do without (optional ones went again without).
        return finish(
            run,
            Run.FAILED,
            DeployRun.Reason.DISPATCH_REJECTED,
            inputs.refusal_message(run.environment, exc),
            now,
            attempt=attempt,
            attempt_state=Attempt.FAILED,
        )
    except GitHubError as exc:
        return finish(
            run,
            Run.FAILED,
            DeployRun.Reason.DISPATCH_REJECTED,
            f"GitHub refused the dispatch: {exc}",
            now,
            attempt=attempt,
            attempt_state=Attempt.FAILED,
        )
    record_dispatch(run, attempt, now, result.run_id, result.html_url or "")
    if result.run_id is None:
        return recover_dispatch(run, attempt, now)
    return True


def record_dispatch(
    run: DeployRun,
    attempt: DeployAttempt,
    now: datetime,
    github_run_id: int | None,
    html_url: str,
    *,
    recovered: bool = False,
    source: str = "",
) -> None:
    # A recovered dispatch (or one a webhook told of) was sent right after its
    # claim; time pickup from there.
    claimed = attempt.dispatch_claimed_at or now
    sent_at = claimed if recovered or source else now
    with transaction.atomic():
        if github_run_id is not None:
            recorded = DeployAttempt.objects.filter(
                pk=attempt.pk, github_run_id__isnull=True
            ).update(github_run_id=github_run_id, html_url=html_url)
            if not recorded:
                # Another worker recorded the run first (a token lookup racing
                # the sender's answer); the timeline has its event already.
                return
        DeployAttempt.objects.filter(pk=attempt.pk, dispatched_at__isnull=True).update(
            dispatched_at=sent_at
        )
        DeployAttempt.objects.filter(pk=attempt.pk, state=Attempt.PENDING).update(
            state=Attempt.DISPATCHED
        )
        if recovered:
            message = f"found run {github_run_id} by its token {attempt.token}"
            if source:
                message += f" in {source}"
            kind = Kind.DISPATCH_RECOVERED
        else:
            message = f"dispatched to {attempt.runner.name}"
            if source:
                message += f" (run {github_run_id}, named in {source})"
            kind = Kind.DISPATCHED
        event(
            run,
            kind,
            message,
            now,
            attempt=attempt,
            runner=attempt.runner.name,
            github_run_id=github_run_id,
            html_url=html_url,
        )


def lookup_step() -> timedelta:
    """How soon a dispatch whose run is not found yet is looked up again: every
    second (the conditional lookup's 304s cost no API budget), or at the poll
    interval if that is shorter; never the slower pace of a deploy that webhooks
    keep up to date, since no webhook is sure to come for a lost dispatch."""
    return min(LOOKUP_STEP, poll())


def find_run(run: DeployRun, attempt: DeployAttempt) -> RunInfo | None:
    env = run.environment
    since = (attempt.dispatch_claimed_at or attempt.created_at) - LOOKUP_MARGIN
    return gateway_for(env.repository).find_run_by_token(
        env.workflow_file, attempt.token, since
    )


def recover_dispatch(run: DeployRun, attempt: DeployAttempt, now: datetime) -> bool:
    """The dispatch was claimed but its run id is unknown: find it by the token.

    Never sends it again. When GitHub has no such run well after the claim, the
    dispatch never arrived (the worker died before sending it): the attempt is
    closed and a new one, with a new token, takes its place.
    """
    try:
        found = find_run(run, attempt)
    except GitHubError as exc:
        log.warning("looking up deploy %s by token failed: %s", run.pk, exc)
        recheck(run, now + lookup_step())
        return False
    if found is not None:
        record_dispatch(run, attempt, now, found.id, found.html_url, recovered=True)
        return True
    claimed = attempt.dispatch_claimed_at or now
    grace = timedelta(seconds=settings.DEPLOY_DISPATCH_LOOKUP_GRACE)
    if now < claimed + grace:
        recheck(run, min(now + lookup_step(), claimed + grace))
        return False
    return next_attempt(
        run,
        attempt,
        now,
        DeployAttempt.FailoverReason.DISPATCH_LOST,
        f"GitHub has no run with token {attempt.token} {grace.seconds} s after the "
        "dispatch was claimed",
    )


def _mark_running(run: DeployRun, attempt: DeployAttempt, now: datetime) -> bool:
    moved = DeployRun.objects.filter(pk=run.pk, state=Run.DISPATCHING).update(
        state=Run.RUNNING, next_check_at=now + poll()
    )
    return bool(moved)
