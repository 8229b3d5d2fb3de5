"""Which runners of a pool are busy with another job, as the control plane knows it.

GitHub's runner list has a ``busy`` flag, but it lags and is known to read
``false`` for a runner in the middle of a job. The control plane knows more: every
``workflow_job`` webhook (and every poll of a deploy's jobs) is recorded as a
``WorkflowJob`` with the runner that took it. A runner is judged busy with another
job when

1. the newest job recorded on it (by start time) is ``in_progress`` and belongs to
   none of this deploy's GitHub runs: a webhook said it started and none said it
   finished. A runner runs one job at a time, so a newer job on the same runner
   means an older one finished even if its ``completed`` webhook was lost; GitHub's
   ``busy=false`` does not overrule this (that is the quirk); or
2. GitHub's runner list says ``busy`` (a job from a repository whose webhooks do
   not reach us, or one started before the webhook was installed), the reading is
   fresh, and no recorded job explains or contradicts it: the newest job recorded
   on the runner is neither this deploy's own nor completed after the reading.

A runner wrongly judged busy costs at most the environment's ``busy_wait``: then the
gate takes the next idle runner, or dispatches to the busy one anyway and leaves the
queueing to GitHub.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import OuterRef, Subquery

from deploys.models import WorkflowJob
from runners.models import Runner


@dataclass(frozen=True)
class Busy:
    """Why a runner counts as busy with another job, and since when if known."""

    runner: str
    # When the job started (webhook), or None when only GitHub's list says busy.
    since: datetime | None
    job: str

    def describe(self) -> str:
        """Stable words for the gate's decision list (no running clock in them)."""
        if self.since is None:
            return "busy with another job (GitHub's runner list)"
        at = self.since.strftime("%H:%M:%S UTC")
        return f"busy with another job ({self.job}, since {at})"

    def for_seconds(self, now: datetime) -> str:
        """Words with the time it has been busy, for a timeline message."""
        if self.since is None:
            return f"{self.runner} busy with another job (GitHub's runner list)"
        seconds = max(0.0, (now - self.since).total_seconds())
        return f"{self.runner} busy with another job for {seconds:.0f} s"


def busy_runners(
    runners: Sequence[Runner], own_runs: Iterable[int], now: datetime
) -> dict[int, Busy]:
    """The runners of ``runners`` busy with a job of none of ``own_runs`` (GitHub
    run ids of the deploy asking), by runner pk. One query whatever the pool size."""
    if not runners:
        return {}
    own = set(own_runs)
    # The newest started job of each pool runner, through the runner-name index.
    newest = (
        WorkflowJob.objects.filter(
            runner_name=OuterRef("name"), started_at__isnull=False
        )
        .order_by("-started_at", "-pk")
        .values("pk")[:1]
    )
    jobs = {
        job.runner_name: job
        for job in WorkflowJob.objects.filter(
            pk__in=Runner.objects.filter(pk__in=[r.pk for r in runners])
            .annotate(newest_job=Subquery(newest))
            .values("newest_job")
        )
    }
    busy: dict[int, Busy] = {}
    for runner in runners:
        job = jobs.get(runner.name)
        if job is not None and job.run_id in own:
            continue  # whatever GitHub says, it is this deploy's own job
        if job is not None and job.status == WorkflowJob.Status.IN_PROGRESS:
            busy[runner.pk] = Busy(
                runner.name, job.started_at, f"{job.name} #{job.github_id}"
            )
            continue
        if not (runner.github_busy and runner.github_is_fresh(now)):
            continue
        seen = runner.github_seen_at
        if job is not None and job.completed_at and seen and job.completed_at >= seen:
            continue  # a webhook told of the job's end after the list was read
        busy[runner.pk] = Busy(runner.name, None, "")
    return busy
