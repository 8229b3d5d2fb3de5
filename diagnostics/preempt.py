"""An SRE's diagnostics run or agent install takes the runner from a canary in flight.

The SRE asks because something may be wrong with the host now; a canary is a routine
check that comes again at the pool's next turn. Queued behind the canary, the SRE's
job would wait for it, up to ``CANARY_PICKUP_TIMEOUT`` when the runner takes no job
(the very case worth diagnosing), and the page would refuse a request the SRE cannot
see coming. So the canary gives way:

1. ``take_over`` (in the request's transaction, before its run is recorded) ends
   the canary ``cancelled``: counted neither as a pass nor as a failure, it leaves
   the runner's canary verdict as it was and shows grey on the canary strip; the
   canary schedule does not count it as the runner's turn.
2. After commit, ``cancel_on_github`` (a task) cancels the canary's GitHub run, so
   the SRE's job does not queue behind it on the runner.
3. A canary whose dispatch was on the wire has no run id yet; its dispatch, once
   GitHub answers, finds it cancelled and cancels the run (``cancel_if_preempted``).
   Each side writes before it reads (the cancelled state, the run id), so one of
   them at least sees both.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from controlplane.github import (
    GitHubConflict,
    GitHubError,
    Purpose,
    for_purpose,
    gateway_for,
)
from diagnostics import conf
from diagnostics.models import HostRun
from runners.models import Runner

log = logging.getLogger(__name__)

CANCEL_TASK = "diagnostics.tasks.cancel_host_run"


def take_over(runner: Runner, what: str, by: str, now: datetime) -> HostRun | None:
    """End the canary in flight on ``runner`` for ``by``'s ``what``; the canary
    cancelled, or None when there was none (or it ended meanwhile)."""
    canary = (
        HostRun.objects.in_flight()
        .filter(runner=runner, kind=HostRun.Kind.CANARY)
        .first()
    )
    if canary is None:
        return None
    detail = (
        f"cancelled at {now.astimezone(UTC):%H:%M:%S} UTC for the {what} {by} "
        f"asked for on {runner.name}; it counts neither for nor against the runner"
    )
    # Conditional: the canary's own watch may be ending it right now.
    ended = HostRun.objects.filter(pk=canary.pk, finished_at__isnull=True).update(
        state=HostRun.State.CANCELLED, detail=detail, finished_at=now
    )
    if not ended:
        return None
    canary.state, canary.detail, canary.finished_at = (
        HostRun.State.CANCELLED,
        detail,
        now,
    )
    log.info("canary %s on %s: %s", canary.token, runner.name, detail)
    return canary


def cancel_on_github(run_id: int) -> None:
    """Cancel the GitHub run of a canary that gave way (the task after commit)."""
    run = HostRun.objects.filter(pk=run_id, state=HostRun.State.CANCELLED).first()
    if run is None or run.github_run_id is None:
        # Never dispatched, or its dispatch is on the wire: cancel_if_preempted.
        return
    _cancel(run, run.github_run_id)


def cancel_if_preempted(run_id: int, github_run_id: int) -> None:
    """A canary's dispatch got its run id: cancel the run if an SRE's request
    took the runner while the dispatch was on the wire."""
    run = HostRun.objects.filter(pk=run_id, state=HostRun.State.CANCELLED).first()
    if run is not None:
        _cancel(run, github_run_id)


def _cancel(run: HostRun, github_run_id: int) -> None:
    with for_purpose(Purpose.CANARY):
        try:
            gateway_for(conf.repository()).cancel_run(github_run_id)
        except GitHubConflict:
            return  # it completed meanwhile (or was cancelled already)
        except GitHubError as exc:
            # The canary job is short: the SRE's job waits behind it at worst.
            why = f"{run.detail} (cancelling its GitHub run failed: {exc})"
            HostRun.objects.filter(pk=run.pk).update(detail=why[:2000])
            log.warning("cancelling canary %s failed: %s", run.token, exc)
