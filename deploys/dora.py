"""Deploy outcomes per environment, the four DORA figures, from the deploy history.

Over the last ``DORA_WINDOW_DAYS`` (default 30) of finished deploys. A **change** is
a deploy of a commit this environment has not run successfully before, that reached
a runner: its first succeeded deploy, or a deploy of it that failed in a deploy step
or deployed the wrong commit. Redeploys and rollbacks put back a commit that already
ran here: they are deploys, not changes. Deploys that never reached a runner (no
healthy runner, frozen, cancelled, refused) changed nothing and are left out. Runs
started outside the control plane are not in its history.

- **deployment frequency**: changes deployed (first succeeded deploys of a commit)
  per day of the window the environment existed. Counting redeploys and rollbacks
  would make a bad week look busy;
- **lead time for changes**: from a commit's date in GitHub (the committer's date,
  recorded when a request resolves its ref, ``CommitDate``) to its first succeeded
  deploy here; the head commit's date only, so a deploy carrying several commits
  counts from the newest;
- **change failure rate**: of the changes, the share that failed or whose commit was
  later rolled back (``Rollback``, whichever deploy of that commit it replaced);
- **time to restore**: from each failed change's end to the next succeeded deploy
  whose commit was not rolled back. For a rolled-back change the clock starts when
  it went live, not when someone asked for the rollback: the bad commit served
  production while nobody had noticed yet, and that is part of the outage.

Medians are reported for the times. :func:`compute` makes three queries whatever
the history's length.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Count, Max, OuterRef, Subquery
from prometheus_client.core import GaugeMetricFamily, Metric

from deploys.dora_conf import window_days
from deploys.models import CommitDate, DeployRun, Environment, Rollback

# A failed deploy counts as a failed change when the job ran the change.
CHANGE_FAILURES = (DeployRun.Reason.DEPLOY_FAILED, DeployRun.Reason.WRONG_SHA)


@dataclass(frozen=True)
class Run:
    """One finished deploy of the window, as the figures read it."""

    pk: int
    sha: str
    state: str
    reason: str
    finished_at: datetime
    committed_at: datetime | None

    @property
    def succeeded(self) -> bool:
        return self.state == DeployRun.State.SUCCEEDED

    @property
    def ran(self) -> bool:
        """It reached a runner: succeeded, or failed in what the job did."""
        return self.succeeded or self.reason in CHANGE_FAILURES


@dataclass(frozen=True)
class Day:
    day: date
    succeeded: int
    failed: int  # failed after reaching a runner
    not_run: int  # failed before reaching one


@dataclass(frozen=True)
class LeadTime:
    run_id: int
    sha: str
    deployed_at: datetime
    seconds: float


@dataclass(frozen=True)
class Failure:
    """A failed change: a deploy that failed, or one whose commit was rolled back."""

    run_id: int
    sha: str
    failed_at: datetime
    rolled_back: bool
    restored_by: int | None = None
    restored_at: datetime | None = None

    @property
    def seconds(self) -> float | None:
        if self.restored_at is None:
            return None
        return (self.restored_at - self.failed_at).total_seconds()


@dataclass(frozen=True)
class Figures:
    """One environment's deploy outcomes over the window."""

    window_days: int
    start: datetime
    now: datetime
    # Days of the window the environment existed (at least one).
    observed_days: float
    deploys: int  # succeeded deploys of any kind
    changes_deployed: int  # first succeeded deploys of a commit
    days: list[Day]
    lead_times: list[LeadTime]  # oldest first
    # Changes deployed whose commit date is not recorded.
    lead_time_unknown: int
    changes: int  # changes deployed, and changes that failed in a deploy
    failures: list[Failure]  # oldest first

    @property
    def per_day(self) -> float:
        # Per day the environment existed: a week-old environment deploying daily
        # deploys daily, not a quarter as often.
        return self.changes_deployed / self.observed_days

    @property
    def young(self) -> bool:
        """The environment is younger than the window."""
        return self.observed_days < self.window_days

    @property
    def lead_time_median(self) -> float | None:
        return _median(item.seconds for item in self.lead_times)

    @property
    def change_failure_rate(self) -> float | None:
        return len(self.failures) / self.changes if self.changes else None

    @property
    def restores(self) -> list[Failure]:
        return [item for item in self.failures if item.restored_at is not None]

    @property
    def restore_median(self) -> float | None:
        return _median(item.seconds or 0.0 for item in self.restores)

    @property
    def failing_since(self) -> datetime | None:
        """When the oldest failed change no good deploy has followed yet failed."""
        return next(
            (item.failed_at for item in self.failures if item.restored_at is None),
            None,
        )


def _median(values: Iterable[float]) -> float | None:
    found = list(values)
    return statistics.median(found) if found else None


def compute(env: Environment, now: datetime) -> Figures:
    """1. The window's finished deploys, each with its commit's date (one query).
    2. The commits among them that succeeded here before the window (one query).
    3. The commits rolled back since the window began (one query).
    4. Walk the deploys oldest first, telling changes from redeploys."""
    days = window_days()
    start = now - timedelta(days=days)
    finished = DeployRun.objects.filter(
        environment=env,
        state__in=(DeployRun.State.SUCCEEDED, DeployRun.State.FAILED),
        finished_at__gte=start,
        finished_at__lte=now,
    )
    rows = (
        finished.annotate(
            committed_at=Subquery(
                CommitDate.objects.filter(
                    repository=env.repository, sha=OuterRef("sha")
                ).values("committed_at")[:1]
            )
        )
        .order_by("finished_at", "pk")
        .values_list("pk", "sha", "state", "reason", "finished_at", "committed_at")
    )
    runs = [
        Run(pk, sha, state, reason, finished_at, committed_at)
        for pk, sha, state, reason, finished_at, committed_at in rows
        if finished_at is not None  # the filter says so; the type does not
    ]
    deployed = set(
        DeployRun.objects.filter(
            environment=env,
            state=DeployRun.State.SUCCEEDED,
            finished_at__lt=start,
            sha__in=finished.exclude(sha="").values("sha"),
        )
        .order_by()
        .values_list("sha", flat=True)
        .distinct()
    )
    rolled_back = set(
        Rollback.objects.filter(
            replaced__environment=env,
            run__created_at__gte=start,
            run__created_at__lte=now,
        )
        .exclude(replaced__sha="")
        .values_list("replaced__sha", flat=True)
    )
    observed = (now - max(start, env.created_at)).total_seconds() / 86400
    return _walk(runs, deployed, rolled_back, now, start, days, max(1.0, observed))


def _walk(
    runs: list[Run],
    deployed: set[str],
    rolled_back: set[str],
    now: datetime,
    start: datetime,
    days: int,
    observed_days: float,
) -> Figures:
    changes_deployed = changes = unknown = 0
    lead_times: list[LeadTime] = []
    failed: list[Run] = []
    for run in runs:
        # A run without a SHA cannot be told from a redeploy: counted as a change.
        if not run.ran or (run.sha and run.sha in deployed):
            continue
        changes += 1
        if not run.succeeded:
            failed.append(run)
            continue
        changes_deployed += 1
        if run.sha:
            deployed.add(run.sha)
        if run.sha in rolled_back:
            failed.append(run)
        if run.committed_at is None:
            unknown += 1
            continue
        seconds = (run.finished_at - run.committed_at).total_seconds()
        # A committer's clock ahead of GitHub's is not a negative lead time.
        lead_times.append(LeadTime(run.pk, run.sha, run.finished_at, max(0.0, seconds)))
    # The deploys that restore service, oldest first: a bisection finds the next one.
    good = [r for r in runs if r.succeeded and not (r.sha and r.sha in rolled_back)]
    good_at = [r.finished_at for r in good]
    return Figures(
        window_days=days,
        start=start,
        now=now,
        observed_days=observed_days,
        deploys=sum(1 for r in runs if r.succeeded),
        changes_deployed=changes_deployed,
        days=_days(runs, start, now),
        lead_times=lead_times,
        lead_time_unknown=unknown,
        changes=changes,
        failures=[_restored(run, good, good_at, rolled_back) for run in failed],
    )


def _restored(
    run: Run, good: list[Run], good_at: list[datetime], rolled_back: set[str]
) -> Failure:
    """The failed change and the next good deploy after it, if any yet."""
    index = bisect.bisect_right(good_at, run.finished_at)
    after = good[index] if index < len(good) else None
    return Failure(
        run_id=run.pk,
        sha=run.sha,
        failed_at=run.finished_at,
        rolled_back=run.succeeded and run.sha in rolled_back,
        restored_by=after.pk if after else None,
        restored_at=after.finished_at if after else None,
    )


def _days(runs: list[Run], start: datetime, now: datetime) -> list[Day]:
    """Deploys per UTC day of the window, oldest first, one entry per day."""
    counts: dict[date, list[int]] = {}
    day = start.date()
    while day <= now.date():
        counts[day] = [0, 0, 0]
        day += timedelta(days=1)
    for run in runs:
        kind = 0 if run.succeeded else 1 if run.ran else 2
        counts[run.finished_at.date()][kind] += 1
    return [Day(day, *values) for day, values in counts.items()]


# The collector's figures per environment, with what they were computed from. A
# scrape every 15 s would otherwise read every deploy of the window each time; the
# figures only change when a deploy finishes, a rollback is requested, a commit date
# is recorded, or the window slides (recomputed at least every MEMO_SECONDS).
MEMO_SECONDS = 60
_memo: dict[int, tuple[tuple[Any, ...], Figures]] = {}


def history_marks() -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]]:
    """What the figures depend on, in three queries whatever the history's length:
    per environment the count, latest end and highest id of its finished deploys
    (the (environment, finished_at) index) and its newest rollback; per repository
    the newest recorded commit date."""
    finished = (
        DeployRun.objects.filter(finished_at__isnull=False)
        .order_by()
        .values("environment_id")
        .annotate(n=Count("pk"), last=Max("finished_at"), top=Max("pk"))
    )
    rollbacks = (
        Rollback.objects.order_by()
        .values("replaced__environment_id")
        .annotate(top=Max("pk"))
        .values_list("replaced__environment_id", "top")
    )
    dates = (
        CommitDate.objects.order_by()
        .values("repository")
        .annotate(top=Max("pk"))
        .values_list("repository", "top")
    )
    return (
        {
            row["environment_id"]: (row["n"], row["last"], row["top"])
            for row in finished
        },
        dict(rollbacks),
        dict(dates),
    )


def forget() -> None:
    """Drop the kept figures: the next scrape recomputes every environment."""
    _memo.clear()


class DoraCollector:
    """The four figures per environment at scrape time: four queries, plus three per
    environment whose history changed since the last scrape (``_memo``)."""

    name = "dora"

    def collect(self) -> Iterable[Metric]:
        from django.utils import timezone

        now = timezone.now()
        finished, rollbacks, dates = history_marks()
        bucket = int(now.timestamp() // MEMO_SECONDS)
        labels = ["environment"]
        families: dict[str, GaugeMetricFamily] = {
            name: GaugeMetricFamily(f"controlplane_dora_{name}", text, labels=labels)
            for name, text in (
                ("deploys_per_day", "Changes deployed per day over the DORA window."),
                (
                    "lead_time_seconds",
                    "Median time from a commit to its first succeeded deploy "
                    "(DORA window).",
                ),
                (
                    "change_failure_ratio",
                    "Share of changes that failed or were rolled back (DORA window).",
                ),
                (
                    "time_to_restore_seconds",
                    "Median time from a failed change to the next good deploy "
                    "(DORA window).",
                ),
                ("changes", "Changes (deploys of a new commit) in the DORA window."),
                (
                    "failing_since_timestamp_seconds",
                    "When the oldest failed change not yet followed by a good "
                    "deploy failed (absent when none).",
                ),
            )
        }
        environments = list(
            Environment.objects.only("pk", "name", "repository", "created_at")
        )
        for gone in set(_memo) - {env.pk for env in environments}:
            del _memo[gone]
        for env in environments:
            key: tuple[Any, ...] = (env.name, env.repository, env.created_at)
            key += (finished.get(env.pk), rollbacks.get(env.pk))
            key += (dates.get(env.repository), bucket, window_days())
            held = _memo.get(env.pk)
            if held is not None and held[0] == key:
                figures = held[1]
            else:
                figures = compute(env, now)
                _memo[env.pk] = (key, figures)
            since = figures.failing_since
            values: dict[str, Any] = {
                "deploys_per_day": figures.per_day,
                "lead_time_seconds": figures.lead_time_median,
                "change_failure_ratio": figures.change_failure_rate,
                "time_to_restore_seconds": figures.restore_median,
                "changes": figures.changes,
                "failing_since_timestamp_seconds": since.timestamp() if since else None,
            }
            for name, value in values.items():
                # No sample when there is nothing to measure: unknown, not zero.
                if value is not None:
                    families[name].add_metric([env.name], float(value))
        yield from families.values()
