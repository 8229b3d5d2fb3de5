"""queued → gating → dispatching: become the environment's active run, then check
the freeze, the promotion rule, the secrets and the pool, and create the attempt."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from deploys import rules
from deploys.engine.busy import busy_runners
from deploys.engine.common import Kind, Run, event, finish, poll, recheck
from deploys.engine.signoff import hold as hold_for_signoffs
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


@dataclass
class Decision:
    """What the gate decided about the pool: the runner to dispatch to (None: no
    eligible runner), or to wait for a busy one; and every runner it considered."""

    runner: Runner | None
    considered: list[dict[str, Any]]
    # Set while the gate waits for the preferred runner to finish another job.
    waiting_until: datetime | None = None
    # Why, in words: a wait's reason, or why the chosen runner is not the preferred.
    why: str = ""


def decide(run: DeployRun, now: datetime) -> Decision:
    """The runner the gate picks for the run's next attempt, with every runner it
    considered and why each was passed over.

    1. Eligibility and order come from :meth:`Environment.pick_runner`: healthy,
       not drained, pool order, a runner this run has not tried first (so a
       failover goes to the next runner).
    2. The preferred runner busy with another job (see :mod:`deploys.engine.busy`)
       is waited for, up to the environment's ``busy_wait`` seconds from when the
       run came to the gate.
    3. Past that (or with ``busy_wait`` 0) the next idle eligible runner is taken;
       when every eligible runner is busy the preferred one is dispatched to anyway
       (GitHub hands it the job when it is free; the pickup timeout still applies).
    """
    env = run.environment
    attempts = list(run.attempts.all())
    tried: dict[int, list[str]] = {}
    for attempt in attempts:
        tried.setdefault(attempt.runner_id, []).append(
            f"attempt {attempt.number}"
            + (f" ({attempt.failover_reason})" if attempt.failover_reason else "")
        )
    chosen, pool = env.pick_runner(tried)
    considered: list[dict[str, Any]] = [
        {
            "runner": choice.runner.name,
            "position": choice.position,
            "state": choice.runner.state,
            "passed_over": list(choice.passed_over),
            # Signal policy notes and a trust override (runners.eligibility).
            **choice.decision_detail(),
        }
        for choice in pool
    ]
    if chosen is None:
        return Decision(None, considered)
    # The eligible runners in the order the gate prefers them, as pick_runner
    # does; only those tried as often as the preferred one are alternatives.
    order = sorted(
        (len(tried.get(c.runner.pk, ())), c.position, i)
        for i, c in enumerate(pool)
        if c.eligible
    )
    alternatives = [i for tries, _, i in order if tries == order[0][0]]
    busy = busy_runners(
        [pool[i].runner for i in alternatives],
        [a.github_run_id for a in attempts if a.github_run_id is not None],
        now,
    )
    for i in alternatives:
        if pool[i].runner.pk in busy:
            considered[i]["busy"] = busy[pool[i].runner.pk].describe()
    preferred = alternatives[0]
    picked, why = preferred, ""
    busy_wait = run.timeout("busy_wait")
    if chosen.pk in busy:
        held = busy[chosen.pk].for_seconds(now)
        until = (run.gate_started_at or now) + timedelta(seconds=busy_wait)
        if now < until:
            considered[preferred]["waiting"] = True
            return Decision(
                None,
                considered,
                waiting_until=until,
                why=f"{held}; waiting up to {busy_wait} s",
            )
        idle = [i for i in alternatives if pool[i].runner.pk not in busy]
        limit = (
            f"busy longer than busy_wait ({busy_wait} s)"
            if busy_wait
            else "busy with another job and busy_wait is 0"
        )
        if idle:
            picked = idle[0]
            why = f"{chosen.name} {limit}"
            considered[preferred]["passed_over"].append(limit)
            for i in alternatives[1 : alternatives.index(picked)]:
                considered[i]["passed_over"].append(busy[pool[i].runner.pk].describe())
        else:
            why = (
                f"every eligible runner is busy with another job; {held}, and "
                "GitHub hands it the job once it is free"
            )
    considered[picked]["chosen"] = True
    if why:
        considered[picked]["why"] = why
    return Decision(pool[picked].runner, considered, why=why)


def gating(run: DeployRun, now: datetime) -> bool:
    """Check the freeze, approvals in the control plane and secrets, pick a runner, create the attempt; or wait,
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
    refusal = rules.gate_refusal(run)
    if refusal is not None:
        return finish(
            run,
            Run.FAILED,
            DeployRun.Reason.NOT_PROMOTED,
            refusal.message,
            now,
            detail=refusal.detail(),
        )
    if hold_for_signoffs(run, now):
        return False
    started = run.gate_started_at or now
    expired = now >= started + timedelta(seconds=run.timeout("gate_timeout"))
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
    decision = decide(run, now)
    if decision.waiting_until is not None:
        _gate_wait(
            run,
            now,
            {
                "considered": decision.considered,
                "busy_wait": run.timeout("busy_wait"),
            },
            decision.why,
            until=decision.waiting_until,
        )
        return False
    runner = decision.runner
    if runner is None:
        if expired:
            return finish(
                run,
                Run.FAILED,
                DeployRun.Reason.NO_HEALTHY_RUNNER,
                f"no healthy runner in the pool within {run.timeout('gate_timeout')} s",
                now,
            )
        _gate_wait(
            run,
            now,
            {"considered": decision.considered},
            "no healthy runner in the pool",
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
            f"attempt {number} goes to {runner.name}"
            + (f": {decision.why}" if decision.why else ""),
            now,
            attempt=attempt,
            considered=decision.considered,
        )
    return True


def _held_by_freeze(run: DeployRun) -> bool:
    """Whether a freeze in force stops the run at the gate.

    Only a run that has not been dispatched yet (a run back at the gate for a
    failover is already deploying, and goes on), and not one an admin requested by
    breaking glass through a freeze (the request checked the freeze and was let
    through; breaking glass to skip approvals alone does not break a later freeze)."""
    if run.attempts.exists():
        return False
    return not run.events.filter(
        kind=Kind.BREAK_GLASS, detail__has_key="freeze"
    ).exists()


def _gate_wait(
    run: DeployRun,
    now: datetime,
    detail: dict[str, Any],
    message: str,
    *,
    until: datetime | None = None,
) -> None:
    """Record why the gate waits, once per distinct reason, and look again soon
    (at ``until`` at the latest, when the wait has an end)."""
    last = (
        run.events.filter(kind=Kind.GATE_WAITING)
        .order_by("-created_at", "-pk")
        .values_list("detail", flat=True)
        .first()
    )
    with transaction.atomic():
        if last != detail:
            event(run, Kind.GATE_WAITING, message, now, **detail)
        recheck(run, min(now + poll(), until) if until else now + poll())
