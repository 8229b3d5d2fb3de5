"""Diagnostics and agent installs without SSH: request, dispatch, watch, report.

1. ``request_run`` (an SRE, from the page or the API) records a ``HostRun`` (one in
   flight per runner, audited) and enqueues its dispatch after commit; a canary in
   flight on the runner gives way to it (``diagnostics.preempt``), another SRE's
   run does not.
2. ``dispatch`` sends the workflow dispatch once, pinned to the runner by its label,
   while the GitHub budget allows it; a lost answer is found again by the token in
   the run's name.
3. ``record_report`` (the host's POST /diagnostics) stores the redacted report: the
   diagnostics run has succeeded.
4. ``watch`` follows a run in flight like a deploy attempt: GitHub's verdict ends it
   (saying why it failed), the deadline times it out and cancels the GitHub run.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane import audit
from controlplane.celery import app
from controlplane.github import (
    GitHubAmbiguousWrite,
    GitHubConflict,
    GitHubError,
    GitHubRateLimited,
    GitHubUnavailable,
    JobInfo,
    gateway_for,
)
from diagnostics import canary_conf, conf, preempt
from diagnostics.models import HostRun
from diagnostics.redact import scrub
from diagnostics.report import key_facts
from runners import versions
from runners.models import Runner

log = logging.getLogger(__name__)

DISPATCH_TASK = "diagnostics.tasks.dispatch_host_run"
# Runs created this long before the request are not the dispatch we look for.
LOOKUP_MARGIN = timedelta(minutes=2)


class Refused(ValueError):
    """The run cannot be requested now; the message says why and what to do."""


def workflow_for(kind: str) -> str:
    if kind == HostRun.Kind.AGENT_INSTALL:
        return conf.agent_workflow()
    if kind == HostRun.Kind.CANARY:
        return canary_conf.workflow()
    return conf.workflow()


class Requested(NamedTuple):
    """The run recorded, and the canary it cancelled on the runner (if any)."""

    run: HostRun
    cancelled_canary: HostRun | None


def request_run(
    runner: Runner, kind: str, actor: audit.Actor, now: datetime | None = None
) -> Requested:
    """Record a diagnostics or agent-install run on ``runner`` and have it
    dispatched, cancelling a canary in flight there; refused while another
    diagnostics or agent-install run is in flight."""
    now = now or timezone.now()
    label = HostRun.Kind(kind).label.lower()
    by = audit.actor_name(actor)
    if runner.removed_at is not None:
        raise Refused(f"{runner.name} was removed from GitHub: no job can run on it")
    if runner.github_status == "offline":
        raise Refused(
            f"GitHub reports {runner.name} offline: a job pinned to it would wait "
            "in the queue. Start the runner service first (see the runbook)."
        )
    try:
        with transaction.atomic():
            canary = preempt.take_over(runner, label, by, now)
            run = HostRun.objects.create(
                runner=runner,
                kind=kind,
                requested_by=by,
                requested_at=now,
                deadline=now + timedelta(seconds=conf.deadline()),
                next_look_at=now,
            )
            cancelled = {"cancelled_canary": canary.token} if canary else {}
            audit.record(
                actor, f"runner.{kind}_requested", runner, token=run.token, **cancelled
            )
            transaction.on_commit(
                lambda: app.send_task(DISPATCH_TASK, args=(run.pk,), queue="health")
            )
            if canary is not None:
                transaction.on_commit(
                    lambda: app.send_task(
                        preempt.CANCEL_TASK, args=(canary.pk,), queue="health"
                    )
                )
    except IntegrityError:
        raise Refused(_busy(runner, label)) from None
    return Requested(run, canary)


def _busy(runner: Runner, label: str) -> str:
    """Why a request is refused: the SRE's run in flight, who asked and when."""
    busy = HostRun.objects.in_flight().filter(runner=runner).first()
    if busy is None:  # it ended meanwhile: asking again will do
        return f"another run was starting on {runner.name}: ask for {label} again"
    return (
        f"{busy.get_kind_display().lower()} requested by {busy.requested_by} at "
        f"{busy.requested_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC is in flight on "
        f"{runner.name}: wait for it to end (by "
        f"{busy.deadline.astimezone(UTC):%H:%M} UTC at the latest) before asking "
        f"for {label}"
    )


def _finish(run: HostRun, state: str, detail: str, now: datetime) -> bool:
    """End the run unless something else ended it first (a report, another worker)."""
    done = HostRun.objects.filter(pk=run.pk, finished_at__isnull=True).update(
        state=state, detail=detail[:2000], finished_at=now
    )
    if done:
        run.state, run.detail, run.finished_at = state, detail, now
        log.info("%s on %s: %s %s", run.kind, run.runner.name, state, detail)
    return bool(done)


def dispatch(run_id: int, now: datetime | None = None) -> None:
    """Send the run's one dispatch (a no-op if it is not waiting for one)."""
    now = now or timezone.now()
    run = HostRun.objects.select_related("runner").filter(pk=run_id).first()
    if run is None or run.state != HostRun.State.DISPATCHING or run.is_final:
        return
    if now >= run.deadline:
        _finish(run, HostRun.State.TIMED_OUT, "never dispatched: " + run.detail, now)
        return
    gateway = gateway_for(conf.repository())
    remaining = gateway.budget.remaining
    if remaining is not None and remaining < conf.min_budget():
        _postpone(
            run,
            now,
            f"waiting for GitHub API budget ({remaining} calls left, "
            f"DIAGNOSTICS_MIN_BUDGET is {conf.min_budget()})",
        )
        return
    # Claim: only one worker sends the dispatch, and a redelivered message does not.
    claimed = HostRun.objects.filter(
        pk=run.pk, state=HostRun.State.DISPATCHING, finished_at__isnull=True
    ).update(
        state=HostRun.State.RUNNING,
        next_look_at=now + timedelta(seconds=conf.poll_interval()),
        detail="",
    )
    if not claimed:
        return
    inputs = {"runner": run.runner.name, "token": run.token}
    try:
        result = gateway.dispatch_workflow(workflow_for(run.kind), conf.ref(), inputs)
    except GitHubAmbiguousWrite:
        # The run may exist: the watch looks it up by its token instead.
        return
    except (GitHubRateLimited, GitHubUnavailable) as exc:
        HostRun.objects.filter(pk=run.pk).update(state=HostRun.State.DISPATCHING)
        _postpone(run, now, f"GitHub unavailable, dispatch will be retried: {exc}")
        return
    except GitHubError as exc:
        _finish(
            run,
            HostRun.State.FAILED,
            f"GitHub refused the dispatch of {workflow_for(run.kind)} in "
            f"{conf.repository()} at {conf.ref()}: {exc.github_message or exc}. "
            "Is the workflow installed there (see the runbook)?",
            now,
        )
        return
    if result.run_id is not None:
        HostRun.objects.filter(pk=run.pk).update(
            github_run_id=result.run_id, html_url=result.html_url or ""
        )
        if run.kind == HostRun.Kind.CANARY:
            # An SRE's request may have taken the runner while this was on the wire.
            preempt.cancel_if_preempted(run.pk, result.run_id)


def _postpone(run: HostRun, now: datetime, why: str) -> None:
    HostRun.objects.filter(pk=run.pk, finished_at__isnull=True).update(
        next_look_at=now + timedelta(seconds=conf.poll_interval()), detail=why[:2000]
    )


def watch_due(now: datetime | None = None, limit: int = 100) -> int:
    """Look at the runs in flight whose next look is due; returns how many."""
    now = now or timezone.now()
    # Canaries have their own watch (diagnostics.canary), driven by job webhooks.
    runs = list(
        HostRun.objects.due(now)
        .exclude(kind=HostRun.Kind.CANARY)
        .select_related("runner")[:limit]
    )
    for run in runs:
        try:
            watch(run, now)
        except Exception:
            # One bad run must not stall the others: look again later.
            log.exception("watching %s failed", run.token)
            _postpone(run, now, run.detail)
    return len(runs)


def watch(run: HostRun, now: datetime) -> None:
    """Advance one run in flight: dispatch it, find its GitHub run, end or time it out."""
    if run.state == HostRun.State.DISPATCHING:
        dispatch(run.pk, now)
        return
    gateway = gateway_for(conf.repository())
    if run.github_run_id is None:
        found = gateway.find_run_by_token(
            workflow_for(run.kind), run.token, run.requested_at - LOOKUP_MARGIN
        )
        if found is not None:
            run.github_run_id, run.html_url = found.id, found.html_url
            HostRun.objects.filter(pk=run.pk).update(
                github_run_id=found.id, html_url=found.html_url
            )
    if now >= run.deadline:
        _time_out(run, now)
        return
    if run.github_run_id is None:
        _postpone(run, now, "")
        return
    github_run = gateway.get_run(run.github_run_id)
    if github_run.status != "completed":
        _postpone(run, now, "")
        return
    conclusion = github_run.conclusion or "unknown"
    if conclusion == "success":
        if run.kind == HostRun.Kind.AGENT_INSTALL:
            _finish(
                run,
                HostRun.State.SUCCEEDED,
                "agent installed: its first heartbeat was recorded",
                now,
            )
        else:
            _finish(
                run,
                HostRun.State.FAILED,
                "the job succeeded but no report arrived: check CONTROLPLANE_URL "
                "and the runner's RUNNER_HEARTBEAT_TOKEN secret (the job's log "
                "shows the report it collected)",
                now,
            )
        return
    jobs = gateway.list_run_jobs(run.github_run_id)
    _finish(run, HostRun.State.FAILED, _failure(conclusion, jobs), now)


def _failure(conclusion: str, jobs: list[JobInfo]) -> str:
    for job in jobs:
        failed = [s.name for s in job.steps if s.conclusion == "failure"]
        if failed:
            return (
                f"the job failed at step '{failed[0]}' on "
                f"{job.runner_name or 'its runner'}: open the run for its log"
            )
    if conclusion == "cancelled":
        return "the run was cancelled on GitHub"
    return f"the run ended with conclusion '{conclusion}': open the run for its log"


def _time_out(run: HostRun, now: datetime) -> None:
    """The deadline passed: say how far the run got, and cancel it on GitHub."""
    minutes = round((run.deadline - run.requested_at).total_seconds() / 60, 1)
    gateway = gateway_for(conf.repository())
    why = f"no result within {minutes} minutes: "
    if run.github_run_id is None:
        why += "GitHub never showed the dispatched run"
    else:
        jobs = gateway.list_run_jobs(run.github_run_id)
        if not jobs or all(job.status in ("queued", "waiting") for job in jobs):
            why += (
                f"no runner picked up the job; is {run.runner.name} online, idle "
                "and labelled with its name?"
            )
        else:
            why += "the job started but did not finish in time"
        try:
            gateway.cancel_run(run.github_run_id)
        except GitHubConflict:
            pass  # it completed meanwhile: nothing left to cancel
        except GitHubError as exc:
            why += f" (cancelling the run failed: {exc})"
        else:
            why += "; the run was cancelled"
    _finish(run, HostRun.State.TIMED_OUT, why, now)


def record_report(
    runner: Runner, token: str, report: dict[str, Any], now: datetime
) -> tuple[int, str]:
    """Store a host's report for its in-flight diagnostics run: ``(status, error)``."""
    run = HostRun.objects.filter(
        runner=runner, token=token, kind=HostRun.Kind.DIAGNOSTICS
    ).first()
    if run is None:
        return 404, f"no diagnostics run {token} was requested for {runner.name}"
    if run.finished_at is not None:
        return 409, (
            f"diagnostics run {token} already ended ({run.state}): request a new one"
        )
    clean = scrub(report)
    updated = HostRun.objects.filter(pk=run.pk, finished_at__isnull=True).update(
        report=clean,
        facts=key_facts(clean),
        reported_at=now,
        state=HostRun.State.SUCCEEDED,
        finished_at=now,
        detail="",
    )
    if not updated:
        return 409, f"diagnostics run {token} already ended: request a new one"
    audit.record("runner-host", "runner.diagnostics_reported", runner, token=token)
    # The runner service's version, for the version rules when nothing else says it.
    versions.record_reported(runner.pk, (clean.get("runner") or {}).get("version"))
    _prune(runner)
    return 201, ""


def _prune(runner: Runner) -> None:
    # Canaries are kept apart (diagnostics.canary): they must not push reports out.
    runs = HostRun.objects.filter(runner=runner).exclude(kind=HostRun.Kind.CANARY)
    keep = list(
        runs.order_by("-requested_at", "-pk").values_list("pk", flat=True)[
            : conf.keep()
        ]
    )
    runs.filter(finished_at__isnull=False).exclude(pk__in=keep).delete()
