"""The canary: a tiny job pinned to each pool runner proves it still takes jobs.

1. ``schedule_due`` (beat, every minute) records a canary ``HostRun`` for each pool
   runner whose turn has come: per environment every ``canary_interval_minutes``,
   never on a runner that is offline, busy or holding a deploy, nor while one of its
   environments deploys; oldest first, a few per pass so dispatches spread out, and
   every interval stretched alike when the pools would spend more than
   ``CANARY_BUDGET_SHARE`` of the hourly API limit (``stretch``).
2. It is dispatched at once like any pinned workflow (``domain.dispatch``: one call,
   the run id comes back with it; the watch retries one the budget held back),
   counted under ``Purpose.CANARY``.
3. ``watch`` follows it from the job records the ``workflow_job`` webhooks write
   (``deploys.WorkflowJob``), with no GitHub call while webhooks flow: the pickup
   (dispatch → job started) and the job's end. GitHub is asked only when no webhook
   spoke of the job within ``CANARY_WEBHOOK_GRACE``, and once at the deadline before
   a canary is failed (and its run cancelled).
4. The verdict lands on the runner (``canary_failing``), which the health sweep
   turns into ``degraded`` / ``canary_failed``; a passing canary clears it.
5. An SRE's diagnostics run or agent install on the runner cancels a canary in
   flight (``diagnostics.preempt``): no verdict, and the runner's turn comes again.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from controlplane.github import (
    GitHubConflict,
    GitHubError,
    Purpose,
    for_purpose,
    gateway_for,
)
from deploys.jobrecords import record_job
from deploys.models import DeployRun, EnvironmentRunner, WorkflowJob
from diagnostics import canary_conf, conf, domain
from diagnostics.models import HostRun
from runners.models import Runner

log = logging.getLogger(__name__)

# How often beat calls ``schedule_due``: the pace at which dispatches are spread.
SCHEDULE_EVERY = 60
# GitHub's hourly limit for a token, when GitHub has not told us the real one yet.
DEFAULT_RATE_LIMIT = 5000
# Calls one canary costs while webhooks flow: its dispatch (a cancel or a look at
# the deadline only for the failing few).
CALLS_PER_CANARY = 1.0
REQUESTED_BY = "canary"


def stretch(intervals: Iterable[float], calls_per_hour: float) -> float:
    """The factor every canary interval (seconds) is multiplied by so that the
    canaries fit in ``calls_per_hour``: 1 when they already fit.

    Stretching all intervals alike keeps each environment's relative pace (a pool
    asking for canaries twice as often still gets them twice as often)."""
    demand = sum(3600.0 / seconds * CALLS_PER_CANARY for seconds in intervals)
    if calls_per_hour <= 0:
        return math.inf if demand else 1.0
    return max(1.0, demand / calls_per_hour)


def budget_calls_per_hour() -> float:
    """The calls per hour canaries may spend: a share of GitHub's hourly limit."""
    limit = gateway_for(conf.repository()).budget.limit or DEFAULT_RATE_LIMIT
    return canary_conf.budget_share() * limit


def pool_intervals() -> tuple[dict[int, float], dict[int, set[int]]]:
    """Each pool runner's canary interval in seconds (the shortest of its
    environments'), and the environments it serves."""
    rows = EnvironmentRunner.objects.filter(
        environment__canary_interval_minutes__gt=0, runner__removed_at__isnull=True
    ).values_list("runner_id", "environment_id", "environment__canary_interval_minutes")
    intervals: dict[int, float] = {}
    environments: dict[int, set[int]] = defaultdict(set)
    for runner_id, environment_id, minutes in rows:
        seconds = float(minutes * 60)
        intervals[runner_id] = min(intervals.get(runner_id, seconds), seconds)
        environments[runner_id].add(environment_id)
    return intervals, environments


def schedule_due(now: datetime | None = None) -> list[HostRun]:
    """Record the canaries whose turn has come (the watch dispatches them)."""
    now = now or timezone.now()
    intervals, environments = pool_intervals()
    if not intervals:
        return []
    factor = stretch(intervals.values(), budget_calls_per_hour())
    if math.isinf(factor):
        return []
    effective = {pk: seconds * factor for pk, seconds in intervals.items()}
    deploying = set(DeployRun.objects.active().values_list("environment_id", flat=True))
    # A canary that gave way to an SRE's run (diagnostics.preempt) was not the
    # runner's turn: it gets one once the SRE's run has ended.
    last = dict(
        HostRun.objects.filter(kind=HostRun.Kind.CANARY, runner_id__in=intervals)
        .exclude(state=HostRun.State.CANCELLED)
        .values("runner_id")
        .annotate(last=Max("requested_at"))
        .values_list("runner_id", "last")
    )
    in_flight = set(
        HostRun.objects.in_flight()
        .filter(runner_id__in=intervals)
        .values_list("runner_id", flat=True)
    )
    free = set(
        Runner.objects.filter(
            pk__in=intervals,
            github_status="online",
            github_busy=False,
            holds_deploy=False,
        ).values_list("pk", flat=True)
    )
    due = [
        pk
        for pk in intervals
        if pk in free
        and pk not in in_flight
        and not environments[pk] & deploying
        and (pk not in last or now - last[pk] >= timedelta(seconds=effective[pk]))
    ]
    # Never run first, then the longest waiting; a few per pass (the pace that
    # covers every pool runner once per interval, plus one to catch up).
    due.sort(key=lambda pk: (pk in last, last.get(pk) or now, pk))
    pace = sum(SCHEDULE_EVERY / seconds for seconds in effective.values())
    runs = []
    for pk in due[: math.ceil(round(pace, 6)) + 1]:
        run = _request(pk, now)
        if run is not None:
            runs.append(run)
    # Dispatched at once, so the pickup is measured from the dispatch.
    with for_purpose(Purpose.CANARY):
        for run in runs:
            domain.dispatch(run.pk, now)
    return runs


def _request(runner_id: int, now: datetime) -> HostRun | None:
    try:
        with transaction.atomic():
            return HostRun.objects.create(
                runner_id=runner_id,
                kind=HostRun.Kind.CANARY,
                requested_by=REQUESTED_BY,
                requested_at=now,
                deadline=now + timedelta(seconds=canary_conf.pickup_timeout()),
                next_look_at=now,
            )
    except IntegrityError:
        return None  # an SRE's run got there first: next turn


def watch_due(now: datetime | None = None, limit: int = 200) -> int:
    """Dispatch and follow the canaries whose next look is due; returns how many."""
    now = now or timezone.now()
    runs = list(
        HostRun.objects.due(now)
        .filter(kind=HostRun.Kind.CANARY)
        .select_related("runner")[:limit]
    )
    with for_purpose(Purpose.CANARY):
        for run in runs:
            try:
                watch(run, now)
            except Exception:
                # One bad canary must not stall the others: look again later.
                log.exception("watching canary %s failed", run.token)
                _later(run, now, canary_conf.webhook_grace())
    return len(runs)


def watch(run: HostRun, now: datetime) -> None:
    """Advance one canary: dispatch it, read its job's records, end it."""
    if run.state == HostRun.State.DISPATCHING:
        domain.dispatch(run.pk, now)
        return
    quiet = now - run.requested_at >= timedelta(seconds=canary_conf.webhook_grace())
    if run.github_run_id is None and quiet:
        _find_run(run)
    job = _job(run)
    if job is None and run.github_run_id is not None and (quiet or now >= run.deadline):
        # No webhook spoke of the job: ask GitHub (the fallback poll).
        job = _poll(run, now)
    if job is not None:
        _note_pickup(run, job)
        if job.status == WorkflowJob.Status.COMPLETED:
            _conclude(run, job, now)
            return
    if now >= run.deadline:
        if job is not None and run.github_run_id is not None:
            # A lost "completed" webhook must not fail a canary that passed.
            job = _poll(run, now) or job
            _note_pickup(run, job)
            if job.status == WorkflowJob.Status.COMPLETED:
                _conclude(run, job, now)
                return
        _time_out(run, job, now)
        return
    _later(run, now, conf.poll_interval())


def _find_run(run: HostRun) -> None:
    """The dispatch's answer was lost: find the run by the token in its name."""
    found = gateway_for(conf.repository()).find_run_by_token(
        canary_conf.workflow(), run.token, run.requested_at - domain.LOOKUP_MARGIN
    )
    if found is not None:
        run.github_run_id, run.html_url = found.id, found.html_url
        HostRun.objects.filter(pk=run.pk).update(
            github_run_id=found.id, html_url=found.html_url
        )


def _job(run: HostRun) -> WorkflowJob | None:
    if run.github_run_id is None:
        return None
    return WorkflowJob.objects.filter(run_id=run.github_run_id).order_by("pk").first()


def _poll(run: HostRun, now: datetime) -> WorkflowJob | None:
    assert run.github_run_id is not None
    jobs = gateway_for(conf.repository()).list_run_jobs(run.github_run_id)
    with transaction.atomic():
        for info in jobs:
            record_job(WorkflowJob.payload_from_info(info, now))
    return _job(run)


def _note_pickup(run: HostRun, job: WorkflowJob) -> None:
    """A runner took the job: the pickup is measured, the job's own clock starts."""
    if run.started_at is not None or job.started_at is None:
        return
    if job.status not in (WorkflowJob.Status.IN_PROGRESS, WorkflowJob.Status.COMPLETED):
        return
    run.started_at = job.started_at
    run.deadline = job.started_at + timedelta(seconds=canary_conf.job_timeout())
    HostRun.objects.filter(pk=run.pk).update(
        started_at=run.started_at, deadline=run.deadline
    )


def _conclude(run: HostRun, job: WorkflowJob, now: datetime) -> None:
    end = job.completed_at or now
    if job.conclusion == "success":
        pickup = run.pickup_seconds or 0.0
        detail = f"picked up after {pickup:.0f} s, ran {_seconds(run, end)} s"
        _finish(run, HostRun.State.SUCCEEDED, detail, end, failing=False)
        return
    failed = [
        str(step.get("name") or "")
        for step in job.steps or ()
        if isinstance(step, dict) and step.get("conclusion") == "failure"
    ]
    if failed:
        detail = f"the canary job failed at step '{failed[0]}' on {job.runner_name}"
    elif run.started_at is None:
        detail = f"the canary job ended '{job.conclusion}' before any runner took it"
    else:
        detail = f"the canary job ended '{job.conclusion}' on {job.runner_name}"
    _finish(run, HostRun.State.FAILED, detail, end, failing=True)


def _seconds(run: HostRun, end: datetime) -> str:
    if run.started_at is None:
        return "?"
    return f"{max(0.0, (end - run.started_at).total_seconds()):.0f}"


def _time_out(run: HostRun, job: WorkflowJob | None, now: datetime) -> None:
    name = run.runner.name
    if run.started_at is None:
        why = (
            f"not picked up within {canary_conf.pickup_timeout()} s: {name} is online "
            "and idle for GitHub yet took no job (full work folder, refused runner "
            "version, a missing name label?)"
        )
    else:
        why = f"the job ran longer than {canary_conf.job_timeout()} s on {name}"
    if run.github_run_id is not None:
        try:
            gateway_for(conf.repository()).cancel_run(run.github_run_id)
        except GitHubConflict:
            pass  # it completed meanwhile: nothing left to cancel
        except GitHubError as exc:
            why += f" (cancelling the run failed: {exc})"
        else:
            why += "; the run was cancelled"
    _finish(run, HostRun.State.TIMED_OUT, why, now, failing=True)


def _finish(
    run: HostRun, state: str, detail: str, end: datetime, *, failing: bool
) -> None:
    with transaction.atomic():
        done = HostRun.objects.filter(pk=run.pk, finished_at__isnull=True).update(
            state=state, detail=detail[:2000], finished_at=end
        )
        if not done:
            return
        Runner.objects.filter(pk=run.runner_id).update(
            canary_failing=failing, canary_checked_at=end
        )
    run.state, run.detail, run.finished_at = state, detail, end
    log.info("canary on %s: %s %s", run.runner.name, state, detail)
    _prune(run.runner_id)


def _later(run: HostRun, now: datetime, seconds: int) -> None:
    HostRun.objects.filter(pk=run.pk, finished_at__isnull=True).update(
        next_look_at=now + timedelta(seconds=seconds)
    )


def _prune(runner_id: int) -> None:
    canaries = HostRun.objects.filter(runner_id=runner_id, kind=HostRun.Kind.CANARY)
    keep = list(canaries.values_list("pk", flat=True)[: canary_conf.keep()])
    canaries.filter(finished_at__isnull=False).exclude(pk__in=keep).delete()


def history(runner: Runner, count: int = 24) -> list[HostRun]:
    """The runner's latest canaries, oldest first (the runner page's strip)."""
    runs = HostRun.objects.filter(runner=runner, kind=HostRun.Kind.CANARY)
    return list(reversed(runs.order_by("-requested_at", "-pk")[:count]))
