"""Deploy outcomes per environment, the four DORA figures, from the deploy history.

Over the last ``DORA_WINDOW_DAYS`` (default 30) of finished deploys:

- **deployment frequency**: succeeded deploys per day;
- **lead time for changes**: from a commit's date in GitHub (recorded when a request
  resolves its ref, ``CommitDate``) to the first succeeded deploy of that commit here;
  redeploys of a commit already deployed are not new changes;
- **change failure rate**: of the changes that reached a runner (succeeded deploys,
  and deploys that failed in a deploy step or deployed the wrong commit), the share
  that failed or was later rolled back (``Rollback``). Deploys that never reached a
  runner (no healthy runner, frozen, cancelled, refused) changed nothing and are left
  out;
- **time to restore**: from each failed change (its end, or the rollback's request for
  a rolled-back one) to the next succeeded deploy.

Medians are reported for the times. :func:`compute` makes four queries whatever the
history's length.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric

from controlplane.env import envint
from deploys.models import CommitDate, DeployRun, Environment, Rollback

_WINDOW_DAYS = envint("DORA_WINDOW_DAYS", 30, minimum=1)
# A failed deploy counts as a failed change when the job ran the change.
CHANGE_FAILURES = (DeployRun.Reason.DEPLOY_FAILED, DeployRun.Reason.WRONG_SHA)


def window_days() -> int:
    return int(getattr(settings, "DORA_WINDOW_DAYS", _WINDOW_DAYS))


@dataclass(frozen=True)
class Day:
    day: date
    succeeded: int
    failed: int


@dataclass(frozen=True)
class Figures:
    """One environment's deploy outcomes over the window."""

    window_days: int
    succeeded: int
    days: list[Day]
    # (deploy id, seconds from commit to deploy), oldest first.
    lead_times: list[tuple[int, float]]
    # Succeeded first deploys of a commit whose commit date is not recorded.
    lead_time_unknown: int
    changes: int
    failed_changes: int
    # (failed deploy id, seconds to the next succeeded deploy), oldest first.
    restores: list[tuple[int, float]]
    # The oldest failed change no succeeded deploy has followed yet.
    failing_since: datetime | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def per_day(self) -> float:
        return self.succeeded / self.window_days

    @property
    def lead_time_median(self) -> float | None:
        return _median(seconds for _, seconds in self.lead_times)

    @property
    def change_failure_rate(self) -> float | None:
        return self.failed_changes / self.changes if self.changes else None

    @property
    def restore_median(self) -> float | None:
        return _median(seconds for _, seconds in self.restores)


def _median(values: Iterable[float]) -> float | None:
    found = list(values)
    return statistics.median(found) if found else None


def compute(env: Environment, now: datetime) -> Figures:
    days = window_days()
    start = now - timedelta(days=days)
    runs = list(
        DeployRun.objects.filter(
            environment=env,
            state__in=(DeployRun.State.SUCCEEDED, DeployRun.State.FAILED),
            finished_at__gte=start,
            finished_at__lte=now,
        )
        .order_by("finished_at", "pk")
        .values("pk", "sha", "state", "reason", "finished_at")
    )
    succeeded = [r for r in runs if r["state"] == DeployRun.State.SUCCEEDED]
    changes = succeeded + [
        r
        for r in runs
        if r["state"] == DeployRun.State.FAILED and r["reason"] in CHANGE_FAILURES
    ]
    rolled_back = dict(
        Rollback.objects.filter(replaced__in=[r["pk"] for r in succeeded]).values_list(
            "replaced_id", "run__created_at"
        )
    )
    lead_times, unknown = _lead_times(env, succeeded, start)
    failures: list[tuple[int, datetime]] = sorted(
        [
            (r["pk"], r["finished_at"])
            for r in changes
            if r["state"] == DeployRun.State.FAILED
        ]
        + [(pk, at) for pk, at in rolled_back.items()],
        key=lambda item: item[1],
    )
    restores, failing_since = _restores(failures, succeeded, set(rolled_back))
    return Figures(
        window_days=days,
        succeeded=len(succeeded),
        days=_days(runs, now, days),
        lead_times=lead_times,
        lead_time_unknown=unknown,
        changes=len(changes),
        failed_changes=len(failures),
        restores=restores,
        failing_since=failing_since,
    )


def _lead_times(
    env: Environment, succeeded: list[dict[str, Any]], start: datetime
) -> tuple[list[tuple[int, float]], int]:
    """Commit to first succeeded deploy here, for each commit first deployed in the
    window; and how many such deploys have no recorded commit date."""
    shas = {r["sha"] for r in succeeded if r["sha"]}
    dates = dict(
        CommitDate.objects.filter(repository=env.repository, sha__in=shas).values_list(
            "sha", "committed_at"
        )
    )
    earlier = set(
        DeployRun.objects.filter(
            environment=env,
            state=DeployRun.State.SUCCEEDED,
            sha__in=shas,
            finished_at__lt=start,
        ).values_list("sha", flat=True)
    )
    seen: set[str] = set(earlier)
    lead_times: list[tuple[int, float]] = []
    unknown = 0
    for run in succeeded:
        sha = run["sha"]
        if not sha or sha in seen:
            continue
        seen.add(sha)
        committed = dates.get(sha)
        if committed is None:
            unknown += 1
            continue
        seconds = (run["finished_at"] - committed).total_seconds()
        lead_times.append((run["pk"], max(0.0, seconds)))
    return lead_times, unknown


def _restores(
    failures: list[tuple[int, datetime]],
    succeeded: list[dict[str, Any]],
    rolled_back: set[int],
) -> tuple[list[tuple[int, float]], datetime | None]:
    """For each failed change, the time to the next succeeded deploy that was not
    itself rolled back; the oldest failure not restored yet."""
    good = [r for r in succeeded if r["pk"] not in rolled_back]
    restores: list[tuple[int, float]] = []
    failing_since: datetime | None = None
    for pk, failed_at in failures:
        after = next((r for r in good if r["finished_at"] > failed_at), None)
        if after is None:
            failing_since = failing_since or failed_at
            continue
        restores.append((pk, (after["finished_at"] - failed_at).total_seconds()))
    return restores, failing_since


def _days(runs: list[dict[str, Any]], now: datetime, days: int) -> list[Day]:
    """Succeeded and failed deploys per UTC day, oldest first, one entry per day."""
    today = now.date()
    counts: dict[date, list[int]] = {
        today - timedelta(days=offset): [0, 0] for offset in range(days)
    }
    for run in runs:
        day = run["finished_at"].date()
        if day in counts:
            counts[day][0 if run["state"] == DeployRun.State.SUCCEEDED else 1] += 1
    return [Day(day, ok, bad) for day, (ok, bad) in sorted(counts.items())]


class DoraCollector:
    """The four figures per environment, computed at scrape time."""

    def collect(self) -> Iterable[Metric]:
        from django.utils import timezone

        now = timezone.now()
        frequency = GaugeMetricFamily(
            "controlplane_dora_deploys_per_day",
            "Succeeded deploys per day over the DORA window.",
            labels=["environment"],
        )
        lead = GaugeMetricFamily(
            "controlplane_dora_lead_time_seconds",
            "Median time from a commit to its first succeeded deploy (DORA window).",
            labels=["environment"],
        )
        failure = GaugeMetricFamily(
            "controlplane_dora_change_failure_ratio",
            "Share of changes that failed or were rolled back (DORA window).",
            labels=["environment"],
        )
        restore = GaugeMetricFamily(
            "controlplane_dora_time_to_restore_seconds",
            "Median time from a failed change to the next good deploy (DORA window).",
            labels=["environment"],
        )
        for env in Environment.objects.only("pk", "name", "repository"):
            figures = compute(env, now)
            frequency.add_metric([env.name], figures.per_day)
            for family, value in (
                (lead, figures.lead_time_median),
                (failure, figures.change_failure_rate),
                (restore, figures.restore_median),
            ):
                if value is not None:
                    family.add_metric([env.name], value)
        yield from (frequency, lead, failure, restore)
