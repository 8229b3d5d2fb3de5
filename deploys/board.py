"""The deploys' panel on the home page's status board: one row per environment
(paused or frozen and until when, the runner a deploy would go to now, the active
deploy, the last deploy's outcome), the last deploys, and the deploy alert rules
whose condition holds, in a fixed number of queries whatever the history's size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, OuterRef, Prefetch, Subquery
from django.urls import reverse

from controlplane.board import OpenAlert, PanelData
from deploys.models import DeployAttempt, DeployRun, Environment, EnvironmentRunner

LAST_DEPLOYS = 8
# The window of the DeployFailed / DeployNoHealthyRunner / DeployFailedOver rules
# (``increase(...[15m])``) and the DeployWaitingForRunner rule's ``for:``.
ALERT_WINDOW = timedelta(minutes=15)
WAITING_FOR = timedelta(minutes=10)


@dataclass(frozen=True)
class EnvironmentRow:
    environment: Environment
    url: str
    frozen: Any  # the FreezeWindow in force, or None
    frozen_until: datetime | None
    next_runner: Any  # Runner or None
    next_runner_url: str
    active: DeployRun | None
    active_age: float | None  # seconds since it was requested
    queued: int
    last: DeployRun | None


def deploys_panel(now: datetime) -> PanelData:
    """Nine queries: environments with their freeze windows and pools (three),
    the unfinished deploys, the last finished deploy of each environment, the last
    deploys, and one aggregate each for the failures, failovers and waiting
    attempts the alert rules watch."""
    last_finished = DeployRun.objects.filter(
        environment=OuterRef("pk"), state__in=DeployRun.FINAL_STATES
    ).order_by("-created_at", "-pk")
    pool = EnvironmentRunner.objects.select_related("runner").order_by("position")
    environments = list(
        Environment.objects.prefetch_related(
            "freeze_windows", Prefetch("pool_entries", queryset=pool)
        )
        .annotate(last_pk=Subquery(last_finished.values("pk")[:1]))
        .order_by("name", "pk")
    )
    unfinished = list(
        DeployRun.objects.unfinished()
        .with_latest_attempt()
        .order_by("created_at", "pk")
    )
    last_runs = {
        run.pk: run
        for run in DeployRun.objects.with_latest_attempt().filter(
            pk__in=[e.last_pk for e in environments if e.last_pk]
        )
    }
    recent = list(DeployRun.objects.with_latest_attempt()[:LAST_DEPLOYS])
    fleet = reverse("runners:fleet")
    rows = []
    for env in environments:
        mine = [run for run in unfinished if run.environment_id == env.pk]
        active = next((r for r in mine if r.state in DeployRun.ACTIVE_STATES), None)
        runner, _ = env.pick_runner(pool=list(env.pool_entries.all()))
        window = env.freeze_at(now)
        rows.append(
            EnvironmentRow(
                environment=env,
                url=reverse("deploys:environment-detail", args=[env.name]),
                frozen=window,
                frozen_until=env.frozen_until(now) if window else None,
                next_runner=runner,
                next_runner_url=f"{fleet}{runner.name}/" if runner else "",
                active=active,
                active_age=(now - active.created_at).total_seconds()
                if active
                else None,
                queued=sum(1 for r in mine if r.state == DeployRun.State.QUEUED),
                last=last_runs.get(env.last_pk),
            )
        )
    return PanelData(
        {"environments": rows, "recent": recent, "now": now},
        _alerts(now, environments),
    )


def _alerts(now: datetime, environments: Sequence[Environment]) -> list[OpenAlert]:
    names = {env.pk: env.name for env in environments}
    since = now - ALERT_WINDOW
    alerts: list[OpenAlert] = []
    failures = (
        DeployRun.objects.filter(
            state=DeployRun.State.FAILED,
            finished_at__gte=since,
            reason__in=[
                DeployRun.Reason.NO_HEALTHY_RUNNER,
                DeployRun.Reason.DEPLOY_FAILED,
            ],
        )
        .values("environment_id", "reason")
        .annotate(n=Count("pk"))
        .order_by("environment_id", "reason")
    )
    for row in failures:
        env = names.get(row["environment_id"], "?")
        link = reverse("deploys:run-list") + f"?environment={env}&state=failed"
        if row["reason"] == DeployRun.Reason.NO_HEALTHY_RUNNER:
            alerts.append(
                OpenAlert(
                    "DeployNoHealthyRunner",
                    "critical",
                    f"No healthy runner for {env}: {row['n']} deploy(s) failed "
                    "in the last 15 min",
                    "deploy-no-healthy-runner",
                    link,
                )
            )
        else:
            alerts.append(
                OpenAlert(
                    "DeployFailed",
                    "warning",
                    f"{row['n']} deploy(s) to {env} failed in the last 15 min",
                    "deploy-failed",
                    link,
                )
            )
    failovers = (
        DeployAttempt.objects.filter(finished_at__gte=since)
        .exclude(failover_reason="")
        .values("run__environment_id", "failover_reason")
        .annotate(n=Count("pk"))
        .order_by("run__environment_id", "failover_reason")
    )
    for over in failovers:
        env = names.get(over["run__environment_id"], "?")
        reason = DeployAttempt.FailoverReason(over["failover_reason"]).label
        alerts.append(
            OpenAlert(
                "DeployFailedOver",
                "warning",
                f"A deploy to {env} failed over in the last 15 min ({reason})",
                "deploy-failed-over",
                reverse("deploys:run-list") + f"?environment={env}",
            )
        )
    # The rule watches attempts dispatched and not picked up, through failovers:
    # the run they belong to has been waiting since it was requested.
    waiting = (
        DeployAttempt.objects.filter(state=DeployAttempt.State.DISPATCHED)
        .values("run__environment_id")
        .annotate(since=Min("run__created_at"), n=Count("pk"))
        .order_by("run__environment_id")
    )
    for wait in waiting:
        if now - wait["since"] < WAITING_FOR:
            continue
        env = names.get(wait["run__environment_id"], "?")
        alerts.append(
            OpenAlert(
                "DeployWaitingForRunner",
                "warning",
                f"A deploy to {env} has waited over 10 min for a runner",
                "deploy-waiting-for-runner",
                reverse("deploys:run-list") + f"?environment={env}",
            )
        )
    return alerts
