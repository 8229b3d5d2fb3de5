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

One module per phase: ``gate`` (queued, gating), ``dispatch`` (dispatching),
``watch`` (running), ``failover`` (stopping GitHub runs, final states); ``common``
holds what they share.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from deploys import enqueue
from deploys.engine.common import Run
from deploys.engine.dispatch import (
    dispatching,
    match_run_by_token,
    record_dispatch,
    recover_dispatch,
    send_dispatch,
)
from deploys.engine.failover import final, stop_github_run
from deploys.engine.gate import decide, gating, queued
from deploys.engine.watch import running
from deploys.models import DeployAttempt, DeployRun

__all__ = [
    "STEPS",
    "advance",
    "decide",
    "match_run_by_token",
    "reconcile",
    "record_dispatch",
    "recover_dispatch",
    "send_dispatch",
    "stop_github_run",
    "wake_for_github_run",
]

# Bound on steps per call, so a bug can never spin a worker forever.
MAX_STEPS = 20


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
        enqueue.advance(pk)
    return len(ids)


def wake_for_github_run(github_run_id: int) -> None:
    """After commit, advance the deploy whose attempt owns this GitHub run, if any."""
    run_id = (
        DeployAttempt.objects.filter(github_run_id=github_run_id)
        .values_list("run_id", flat=True)
        .first()
    )
    if run_id is not None:
        enqueue.advance_on_commit(run_id)


STEPS: dict[str, Callable[[DeployRun, datetime], bool]] = {
    Run.QUEUED: queued,
    Run.GATING: gating,
    Run.DISPATCHING: dispatching,
    Run.RUNNING: running,
    Run.SUCCEEDED: final,
    Run.FAILED: final,
    Run.CANCELLED: final,
}
