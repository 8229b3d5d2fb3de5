"""The deploy state machine: one idempotent ``advance(run_id)``.

    queued → gating → dispatching → running → succeeded | failed | cancelled
                ▲                       │
                └──── failover ◄────────┘   (a new attempt on the next runner)

Tasks, webhooks and the reconciler all call :func:`advance`; it re-reads the run and
takes every step it can. Each step claims its work with a conditional UPDATE (0 rows:
another worker got there first, or the run moved on), writes its events in the same
transaction, and makes GitHub calls outside transactions and row locks. Any worker
may die at any point: the run keeps a ``next_check_at`` deadline the reconciler
honours, and a dispatch is claimed before it is sent, so it is sent at most once;
a claimed dispatch whose outcome was lost is found again by its correlation token.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from controlplane.github import (
    GitHubAmbiguousWrite,
    GitHubConflict,
    GitHubError,
    GitHubGateway,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubUnavailable,
    JobInfo,
    RunInfo,
    gateway,
    gateway_from_settings,
)
from deploys.models import (
    DeployAttempt,
    DeployEvent,
    DeployRun,
)
from rotations import gate as secrets_gate
from runners.models import Runner, State

log = logging.getLogger(__name__)

Run = DeployRun.State
Attempt = DeployAttempt.State
Kind = DeployEvent.Kind

# Bound on steps per call, so a bug can never spin a worker forever.
MAX_STEPS = 20
# How long a queued run waits before looking again (a finishing run also wakes the
# next queued one at once).
QUEUE_RECHECK = timedelta(seconds=10)
# Runs created before this margin are not the dispatch we look for.
LOOKUP_MARGIN = timedelta(minutes=10)


def _poll() -> timedelta:
    return timedelta(seconds=settings.DEPLOY_POLL_INTERVAL)


# GitHub access --------------------------------------------------------------------------

_gateways: dict[tuple[int, str], GitHubGateway] = {}
_gateways_lock = threading.Lock()


def gateway_for(repository: str) -> GitHubGateway:
    """The gateway for an environment's repository (the configured one is shared)."""
    if repository == settings.GITHUB_REPOSITORY:
        return gateway()
    key = (os.getpid(), repository)
    with _gateways_lock:
        if key not in _gateways:
            _gateways[key] = gateway_from_settings(repository=repository)
        return _gateways[key]


def reset_gateways() -> None:
    with _gateways_lock:
        _gateways.clear()


# Entry points ---------------------------------------------------------------------------


def advance(run_id: int, *, now: datetime | None = None) -> str:
    """Take every step the run can take now; returns its state afterwards.

    Safe to call at any time, from any number of workers at once, any number of
    times: each step re-reads the run and claims before acting. ``now`` is for
    tests; workers read the clock at each step.
    """
    state = ""
    for _ in range(MAX_STEPS):
        run = DeployRun.objects.select_related("environment").filter(pk=run_id).first()
        if run is None:
            return ""
        state = run.state
        moment = now or timezone.now()
        if not STEPS[run.state](run, moment):
            break
    return str(
        DeployRun.objects.filter(pk=run_id).values_list("state", flat=True).first()
        or state
    )


def reconcile(now: datetime | None = None, *, limit: int = 500) -> int:
    """Enqueue an advance for every run whose deadline passed; returns how many.

    The deadline moves a lease ahead first, so the next reconciler pass does not
    enqueue the same run again while a worker has it; a lost message only delays
    the run by that lease.
    """
    from deploys.tasks import advance_run

    now = now or timezone.now()
    ids = list(
        DeployRun.objects.due(now)
        .order_by("next_check_at")
        .values_list("pk", flat=True)[:limit]
    )
    if not ids:
        return 0
    lease = now + timedelta(seconds=settings.DEPLOY_RECONCILE_LEASE)
    DeployRun.objects.filter(pk__in=ids, next_check_at__lte=now).update(
        next_check_at=lease
    )
    for pk in ids:
        advance_run.delay(pk)
    return len(ids)


def wake_next_queued(environment_id: int) -> None:
    """After commit, advance the oldest queued run of the environment, if any."""
    from deploys.tasks import advance_run

    next_id = (
        DeployRun.objects.queued()
        .filter(environment_id=environment_id)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    if next_id is not None:
        transaction.on_commit(lambda: advance_run.delay(next_id))


def wake_for_github_run(github_run_id: int) -> None:
    """After commit, advance the deploy whose attempt owns this GitHub run, if any."""
    from deploys.tasks import advance_run

    run_id = (
        DeployAttempt.objects.filter(github_run_id=github_run_id)
        .values_list("run_id", flat=True)
        .first()
    )
    if run_id is not None:
        transaction.on_commit(lambda: advance_run.delay(run_id))


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
    _record_dispatch(
        attempt.run,
        attempt,
        now or timezone.now(),
        github_run_id,
        html_url,
        recovered=found,
        source="a workflow_run webhook",
    )
    return True


# Helpers ----------------------------------------------------------------------------------


def _event(
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


def _recheck(run: DeployRun, at: datetime) -> None:
    DeployRun.objects.filter(pk=run.pk).exclude(
        state__in=DeployRun.FINAL_STATES
    ).update(next_check_at=at)


def _finish(
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
    """Move the run to a final state, once; ``cleanup`` keeps a deadline so the
    engine comes back to cancel a GitHub run that may still be going; ``detail``
    goes on the final event."""
    kinds: dict[str, str] = {Run.SUCCEEDED: Kind.SUCCEEDED, Run.FAILED: Kind.FAILED}
    with transaction.atomic():
        moved = (
            DeployRun.objects.filter(pk=run.pk)
            .exclude(state__in=DeployRun.FINAL_STATES)
            .update(
                state=state,
                reason=reason,
                message=message[:500],
                finished_at=now,
                next_check_at=now if cleanup else None,
            )
        )
        if not moved:
            return False
        if attempt is not None and attempt_state is not None:
            fields: dict[str, Any] = {"state": attempt_state, "finished_at": now}
            if conclusion:
                fields["conclusion"] = conclusion
            DeployAttempt.objects.filter(pk=attempt.pk).exclude(
                state__in=DeployAttempt.FINAL_STATES
            ).update(**fields)
        _event(
            run,
            kinds.get(state, Kind.CANCELLED),
            message,
            now,
            attempt=attempt,
            reason=reason,
            **(detail or {}),
        )
        wake_next_queued(run.environment_id)
    return True


def _runner_down(runner: Runner) -> bool:
    """The attempt's runner can no longer be trusted with the job."""
    return runner.state == State.UNHEALTHY or runner.removed_at is not None


def _deploy_job(jobs: list[JobInfo], runner_name: str) -> JobInfo | None:
    """The deploy job of a run: the one aimed at the runner's label, else the first."""
    for job in jobs:
        if runner_name in job.labels:
            return job
    return jobs[0] if jobs else None


# queued ------------------------------------------------------------------------------------


def _queued(run: DeployRun, now: datetime) -> bool:
    """Become the environment's active run, if it is free and this is the oldest."""
    env = run.environment
    if env.paused:
        _recheck(run, now + QUEUE_RECHECK)
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
        _recheck(run, now + QUEUE_RECHECK)
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
                _event(run, Kind.GATING, "checking the runner pool", now)
    except IntegrityError:
        _recheck(run, now + QUEUE_RECHECK)
        return False
    return bool(moved)


# gating ------------------------------------------------------------------------------------


def considered_runners(run: DeployRun) -> tuple[Runner | None, list[dict[str, Any]]]:
    """The runner the gate picks for the run's next attempt, and every runner it
    considered with why each was passed over.

    Pool order, healthy and not drained; a runner this run already tried is passed
    over while an untried one is eligible (a failover goes to the next runner), and
    chosen again only when every eligible runner has been tried.
    """
    tried: dict[int, list[str]] = {}
    for attempt in run.attempts.all():
        tried.setdefault(attempt.runner_id, []).append(
            f"attempt {attempt.number}"
            + (f" ({attempt.failover_reason})" if attempt.failover_reason else "")
        )
    pool = run.environment.pool()
    considered: list[dict[str, Any]] = []
    eligible: list[tuple[int, int, Runner]] = []
    for entry in pool:
        runner = entry.runner
        why = runner.ineligibility_reasons()
        item: dict[str, Any] = {
            "runner": runner.name,
            "position": entry.position,
            "state": runner.state,
            "passed_over": why,
        }
        considered.append(item)
        if not why:
            eligible.append((len(tried.get(runner.pk, [])), entry.position, runner))
    chosen: Runner | None = None
    if eligible:
        chosen = min(eligible, key=lambda e: (e[0], e[1]))[2]
    for item, entry in zip(considered, pool, strict=True):
        if chosen is not None and entry.runner_id == chosen.pk:
            item["chosen"] = True
        elif not item["passed_over"] and entry.runner_id in tried:
            item["passed_over"] = [
                "already tried: " + ", ".join(tried[entry.runner_id])
            ]
    return chosen, considered


def _gating(run: DeployRun, now: datetime) -> bool:
    """Check the freeze and secrets, pick a runner, create the attempt; or wait,
    or give up."""
    env = run.environment
    window = env.freeze_at(now)
    if window is not None and _held_by_freeze(run):
        return _finish(
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
    missing, overdue = secrets_gate.check(env, now, gateway_for)
    if missing:
        if expired:
            return _finish(
                run,
                Run.FAILED,
                DeployRun.Reason.MISSING_SECRETS,
                "required secrets missing in GitHub: " + ", ".join(missing),
                now,
            )
        _gate_wait(run, now, {"missing_secrets": missing}, "waiting for secrets")
        return False
    if missing is None:  # GitHub did not answer: try again shortly
        _recheck(run, now + _poll())
        return False
    if overdue:
        if expired:
            return _finish(
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
            return _finish(
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
            state=Run.DISPATCHING, next_check_at=now + _poll()
        )
        if not moved:
            return False
        attempt = DeployAttempt.objects.create(
            run=run, number=number, runner=runner, created_at=now
        )
        _event(
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
            _event(run, Kind.GATE_WAITING, message, now, **detail)
        _recheck(run, now + _poll())


# dispatching ---------------------------------------------------------------------------------


def _dispatching(run: DeployRun, now: datetime) -> bool:
    attempt = run.current_attempt()
    if attempt is None:  # cannot happen: the gate creates it with the transition
        return _finish(run, Run.FAILED, "", "no attempt to dispatch", now)
    if attempt.github_run_id is not None:
        return _mark_running(run, attempt, now)
    if attempt.dispatch_claimed_at is None:
        claimed = DeployAttempt.objects.filter(
            pk=attempt.pk, dispatch_claimed_at__isnull=True
        ).update(dispatch_claimed_at=now)
        if not claimed:
            return False
        attempt.dispatch_claimed_at = now
        return _send_dispatch(run, attempt, now)
    return _recover_dispatch(run, attempt, now)


def _send_dispatch(run: DeployRun, attempt: DeployAttempt, now: datetime) -> bool:
    """Send the attempt's one dispatch (its claim is already committed)."""
    env = run.environment
    runner_name = attempt.runner.name
    inputs = {"runner": runner_name, "token": attempt.token}
    try:
        result = gateway_for(env.repository).dispatch_workflow(
            env.workflow_file, run.ref, inputs
        )
    except GitHubAmbiguousWrite as exc:
        # It may have created the run: only the token lookup may decide now.
        _event(
            run,
            Kind.DISPATCH_RETRY,
            f"dispatch answer lost ({exc}); looking the run up by its token",
            now,
            attempt=attempt,
        )
        _recheck(run, now + _poll())
        return False
    except (GitHubUnavailable, GitHubRateLimited) as exc:
        # The gateway raises these for a dispatch only when GitHub never received
        # it (no connection, or refused by a rate limit): safe to send again.
        with transaction.atomic():
            DeployAttempt.objects.filter(pk=attempt.pk).update(dispatch_claimed_at=None)
            _event(
                run,
                Kind.DISPATCH_RETRY,
                f"dispatch not sent ({exc}); trying again",
                now,
                attempt=attempt,
            )
            _recheck(run, now + _poll())
        return False
    except GitHubError as exc:
        return _finish(
            run,
            Run.FAILED,
            DeployRun.Reason.DISPATCH_REJECTED,
            f"GitHub refused the dispatch: {exc}",
            now,
            attempt=attempt,
            attempt_state=Attempt.FAILED,
        )
    _record_dispatch(run, attempt, now, result.run_id, result.html_url or "")
    if result.run_id is None:
        return _recover_dispatch(run, attempt, now)
    return True


def _record_dispatch(
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
        _event(
            run,
            kind,
            message,
            now,
            attempt=attempt,
            runner=attempt.runner.name,
            github_run_id=github_run_id,
            html_url=html_url,
        )


def _find_run(run: DeployRun, attempt: DeployAttempt) -> RunInfo | None:
    env = run.environment
    since = (attempt.dispatch_claimed_at or attempt.created_at) - LOOKUP_MARGIN
    return gateway_for(env.repository).find_run_by_token(
        env.workflow_file, attempt.token, since
    )


def _recover_dispatch(run: DeployRun, attempt: DeployAttempt, now: datetime) -> bool:
    """The dispatch was claimed but its run id is unknown: find it by the token.

    Never sends it again. When GitHub has no such run well after the claim, the
    dispatch never arrived (the worker died before sending it): the attempt is
    closed and a new one, with a new token, takes its place.
    """
    try:
        found = _find_run(run, attempt)
    except GitHubError as exc:
        log.warning("looking up deploy %s by token failed: %s", run.pk, exc)
        _recheck(run, now + _poll())
        return False
    if found is not None:
        _record_dispatch(run, attempt, now, found.id, found.html_url, recovered=True)
        return True
    claimed = attempt.dispatch_claimed_at or now
    grace = timedelta(seconds=settings.DEPLOY_DISPATCH_LOOKUP_GRACE)
    if now < claimed + grace:
        _recheck(run, min(now + _poll(), claimed + grace))
        return False
    return _next_attempt(
        run,
        attempt,
        now,
        DeployAttempt.FailoverReason.DISPATCH_LOST,
        f"GitHub has no run with token {attempt.token} {grace.seconds} s after the "
        "dispatch was claimed",
    )


def _mark_running(run: DeployRun, attempt: DeployAttempt, now: datetime) -> bool:
    moved = DeployRun.objects.filter(pk=run.pk, state=Run.DISPATCHING).update(
        state=Run.RUNNING, next_check_at=now + _poll()
    )
    return bool(moved)


# running -----------------------------------------------------------------------------------


def _running(run: DeployRun, now: datetime) -> bool:
    attempt = run.current_attempt()
    if attempt is None:
        return False
    if attempt.state == Attempt.CANCELLING:
        return _continue_failover(run, attempt, now)
    if attempt.github_run_id is None:
        return _recover_dispatch(run, attempt, now)
    runner = Runner.objects.get(pk=attempt.runner_id)
    try:
        jobs = gateway_for(run.environment.repository).list_run_jobs(
            attempt.github_run_id
        )
    except GitHubError as exc:
        log.warning("polling deploy %s failed: %s", run.pk, exc)
        _recheck(run, now + _poll())
        return False
    job = _deploy_job(jobs, runner.name)
    if job is None or job.status in ("queued", "waiting", "pending", "requested"):
        if _runner_down(runner):
            return _start_failover(
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
            return _start_failover(
                run,
                attempt,
                DeployAttempt.FailoverReason.PICKUP_TIMEOUT,
                f"{runner.name} did not pick the job up within "
                f"{run.environment.pickup_timeout} s",
                now,
            )
        _recheck(run, min(now + _poll(), deadline))
        return False
    if job.runner_name and job.runner_name != runner.name:
        return _wrong_runner(run, attempt, job, now)
    progressed = _note_pickup(run, attempt, job, now)
    if job.status != "completed":
        if _runner_down(runner):
            return _start_failover(
                run,
                attempt,
                DeployAttempt.FailoverReason.RUNNER_UNHEALTHY,
                f"{runner.name} turned {runner.state} while running the job",
                now,
            )
        _recheck(run, now + _poll())
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
            _event(
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
        return _finish(
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
        return _next_attempt(
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
    return _finish(
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
    return _finish(
        run,
        Run.FAILED,
        DeployRun.Reason.WRONG_RUNNER,
        f"the job ran on {job.runner_name}, not on {attempt.runner.name}: check that "
        "the runner's name is a label no other runner carries",
        now,
        attempt=attempt,
        cleanup=True,
    )


# failover -----------------------------------------------------------------------------------


def _start_failover(
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
            _event(
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
    return _continue_failover(run, attempt, now)


def _continue_failover(run: DeployRun, attempt: DeployAttempt, now: datetime) -> bool:
    if not stop_github_run(run, attempt, now):
        _recheck(run, now + _poll())
        return False
    return _next_attempt(
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
            found = _find_run(run, attempt)
        except GitHubError:
            return False
        if found is None:
            grace = timedelta(seconds=settings.DEPLOY_DISPATCH_LOOKUP_GRACE)
            return now >= attempt.dispatch_claimed_at + grace
        _record_dispatch(run, attempt, now, found.id, found.html_url, recovered=True)
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
            _event(
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
            _event(
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


def _next_attempt(
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
            _event(
                run,
                Kind.FAILOVER,
                message,
                now,
                attempt=attempt,
                reason=reason,
                runner=attempt.runner.name,
            )
        if run.attempts.count() >= env.max_attempts:
            return _finish(
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


# final states ------------------------------------------------------------------------------


def _final(run: DeployRun, now: datetime) -> bool:
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
        next_check_at=None if done else now + _poll()
    )
    return False


STEPS: dict[str, Callable[[DeployRun, datetime], bool]] = {
    Run.QUEUED: _queued,
    Run.GATING: _gating,
    Run.DISPATCHING: _dispatching,
    Run.RUNNING: _running,
    Run.SUCCEEDED: _final,
    Run.FAILED: _final,
    Run.CANCELLED: _final,
}
