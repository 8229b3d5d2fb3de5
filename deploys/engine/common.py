"""What every phase of the engine shares: GitHub access, timeline events, deadlines,
and the two ways an attempt ends (the run finishes, or goes back to the gate)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from deploys.models import DeployAttempt, DeployEvent, DeployRun

Run = DeployRun.State
Attempt = DeployAttempt.State
Kind = DeployEvent.Kind

# The inputs of every dispatch, which the reference workflows (deploys/workflows/)
# declare, all required: GitHub refuses a dispatch that sends an input the workflow
# does not declare or leaves out a required one.
DISPATCH_INPUTS = ("runner", "token", "sha", "environment")


def poll() -> timedelta:
    return timedelta(seconds=settings.DEPLOY_POLL_INTERVAL)


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
