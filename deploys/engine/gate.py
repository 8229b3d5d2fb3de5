"""queued → gating → dispatching: become the environment's active run, then check
the freeze, the secrets and the pool, and create the attempt."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from deploys.engine.common import Kind, Run, event, finish, poll, recheck
from deploys.models import DeployAttempt, DeployRun
from rotations import gate as secrets_gate
from runners.models import Runner

log = logging.getLogger(__name__)

# How long a queued run waits before looking again (a finishing run also wakes the
# next queued one at once).
QUEUE_RECHECK = timedelta(seconds=10)


def queued(run: DeployRun, now: datetime) -> bool:
    """Become the environment's active run, if it is free and this is the oldest."""
    env = run.environment
    if env.paused:
        recheck(run, now + QUEUE_RECHECK)
        return False
    older = (
        DeployRun.objects.queued()
        .filter(environment_id=env.pk)
        .filter(
            Q(created_at__lt=run.created_at)
            | Q(created_at=run.created_at, pk__lt=run.pk)
        )
        .exists()
    )
    if older or DeployRun.objects.active().filter(environment_id=env.pk).exists():
        recheck(run, now + QUEUE_RECHECK)
        return False
    try:
        with transaction.atomic():
            # The partial unique constraint decides between concurrent promotions:
            # the loser's UPDATE raises and it stays queued.
            moved = DeployRun.objects.filter(pk=run.pk, state=Run.QUEUED).update(
                state=Run.GATING,
                gate_started_at=now,
                started_at=now,
                next_check_at=now,
            )
            if moved:
                event(run, Kind.GATING, "checking the runner pool", now)
    except IntegrityError:
        recheck(run, now + QUEUE_RECHECK)
        return False
    return bool(moved)


def considered_runners(run: DeployRun) -> tuple[Runner | None, list[dict[str, Any]]]:
    """The runner the gate picks for the run's next attempt, and every runner it
    considered with why each was passed over (see :meth:`Environment.pick_runner`;
    a failover goes to a runner this run has not tried yet)."""
    tried: dict[int, list[str]] = {}
    for attempt in run.attempts.all():
        tried.setdefault(attempt.runner_id, []).append(
            f"attempt {attempt.number}"
            + (f" ({attempt.failover_reason})" if attempt.failover_reason else "")
        )
    chosen, pool = run.environment.pick_runner(tried)
    considered: list[dict[str, Any]] = []
    for choice in pool:
        item: dict[str, Any] = {
            "runner": choice.runner.name,
            "position": choice.position,
            "state": choice.runner.state,
            "passed_over": choice.passed_over,
        }
        if choice.chosen:
            item["chosen"] = True
        item.update(choice.decision_detail())  # signal policy notes, trust override
        considered.append(item)
    return chosen, considered


def gating(run: DeployRun, now: datetime) -> bool:
    """Check the freeze and secrets, pick a runner, create the attempt; or wait,
    or give up."""
    env = run.environment
    window = env.freeze_at(now)
    if window is not None and _held_by_freeze(run):
        return finish(
            run,
            Run.FAILED,
            DeployRun.Reason.FROZEN,
            f"{env.name} froze before the deploy started: {window.reason} "
            f"({window.schedule})",
            now,
            detail={
                "freeze": window.reason,
                "window": window.pk,
                "schedule": window.schedule,
            },
        )
    started = run.gate_started_at or now
    expired = now >= started + timedelta(seconds=env.gate_timeout)
    missing, overdue = secrets_gate.check(env, now)
    if missing:
        if expired:
            return finish(
                run,
                Run.FAILED,
                DeployRun.Reason.MISSING_SECRETS,
                "required secrets missing in GitHub: " + ", ".join(missing),
                now,
            )
        _gate_wait(run, now, {"missing_secrets": missing}, "waiting for secrets")
        return False
    if missing is None:  # GitHub did not answer: try again shortly
        recheck(run, now + poll())
        return False
    if overdue:
        if expired:
            return finish(
                run,
                Run.FAILED,
                DeployRun.Reason.MISSING_SECRETS,
                "required secrets overdue for rotation: " + ", ".join(overdue),
                now,
            )
        _gate_wait(
            run,
            now,
            {"overdue_secrets": overdue},
            "waiting for overdue secrets to be rotated",
        )
        return False
    runner, considered = considered_runners(run)
    if runner is None:
        if expired:
            return finish(
                run,
                Run.FAILED,
                DeployRun.Reason.NO_HEALTHY_RUNNER,
                f"no healthy runner in the pool within {env.gate_timeout} s",
                now,
            )
        _gate_wait(
            run, now, {"considered": considered}, "no healthy runner in the pool"
        )
        return False
    number = run.attempts.count() + 1
    with transaction.atomic():
        moved = DeployRun.objects.filter(pk=run.pk, state=Run.GATING).update(
            state=Run.DISPATCHING, next_check_at=now + poll()
        )
        if not moved:
            return False
        attempt = DeployAttempt.objects.create(
            run=run, number=number, runner=runner, created_at=now
        )
        event(
            run,
            Kind.GATE_PASSED,
            f"attempt {number} goes to {runner.name}",
            now,
            attempt=attempt,
            considered=considered,
        )
    return True


def _held_by_freeze(run: DeployRun) -> bool:
    """Whether a freeze in force stops the run at the gate.

    Only a run that has not been dispatched yet (a run back at the gate for a
    failover is already deploying, and goes on), and not one an admin requested by
    breaking glass (the request checked the freeze and was let through)."""
    if run.attempts.exists():
        return False
    return not run.events.filter(kind=Kind.BREAK_GLASS).exists()


def _gate_wait(
    run: DeployRun, now: datetime, detail: dict[str, Any], message: str
) -> None:
    """Record why the gate waits, once per distinct reason, and look again soon."""
    last = (
        run.events.filter(kind=Kind.GATE_WAITING)
        .order_by("-created_at", "-pk")
        .values_list("detail", flat=True)
        .first()
    )
    with transaction.atomic():
        if last != detail:
            event(run, Kind.GATE_WAITING, message, now, **detail)
        recheck(run, now + poll())
