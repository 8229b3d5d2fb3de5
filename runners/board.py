"""The fleet's panel on the home page's status board: runners by state, the ones
that are not healthy by name, and the runner alert rules whose condition holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from django.db.models import Case, Count, IntegerField, Value, When
from django.urls import reverse

from controlplane.board import OpenAlert, PanelData
from runners import freshness
from runners.models import Runner
from runners.states import Reason, State, runbook_for

# How many runners that are not healthy the panel names; the rest are a count and
# a link to the fleet page filtered to them.
NAMED = 8

# The runner alert rules of monitoring/prometheus/alerts.yml, by the reasons their
# ``controlplane_runner_reason`` selector matches.
RUNNER_RULES: tuple[tuple[str, str, tuple[Reason, ...]], ...] = (
    ("RunnerHeartbeatStale", "warning", (Reason.HEARTBEAT_STALE,)),
    ("RunnerDegraded", "warning", (Reason.DISK_LOW, Reason.LOAD_HIGH)),
    ("RunnerSignalsDisagree", "warning", (Reason.SIGNALS_DISAGREE,)),
    ("RunnerGitHubOffline", "warning", (Reason.GITHUB_OFFLINE,)),
    (
        "RunnerMonitoringGap",
        "warning",
        (
            Reason.EXPORTER_UNREACHABLE,
            Reason.GITHUB_ONLY,
            Reason.NO_SIGNAL,
            Reason.NEVER_SEEN,
        ),
    ),
)
# Worst first in the named list.
RANK = {State.UNHEALTHY: 0, State.UNKNOWN: 1, State.DEGRADED: 2}


@dataclass(frozen=True)
class NamedRunner:
    runner: Runner
    url: str
    reason_label: str
    runbook: str
    reevaluating: str


def fleet_panel(now: datetime) -> PanelData:
    """Two queries: active runners counted by state, reason and drain flag (one
    GROUP BY: cheaper over a large fleet than a conditional count per figure), and
    the worst runners by name."""
    counts: dict[str, int] = {"active": 0, "drained": 0}
    counts.update({f"state_{state}": 0 for state in State})
    counts.update({f"reason_{reason}": 0 for reason in Reason if reason})
    groups = (
        Runner.objects.active()
        .values_list("state", "reason", "drained")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for state, reason, drained, n in groups:
        counts["active"] += n
        counts[f"state_{state}"] = counts.get(f"state_{state}", 0) + n
        if reason:
            counts[f"reason_{reason}"] = counts.get(f"reason_{reason}", 0) + n
        if drained:
            counts["drained"] += n
    prefix = reverse("runners:fleet")
    worst = (
        Runner.objects.active()
        .filter(state__in=list(RANK))
        .annotate(
            rank=Case(
                *(When(state=s, then=Value(r)) for s, r in RANK.items()),
                output_field=IntegerField(),
            )
        )
        .only(
            "pk",
            "name",
            "state",
            "reason",
            "state_since",
            "drained",
            "heartbeat_deadline",
            "last_heartbeat_at",
            # The trust override badge.
            "trusted_until",
            "trusted_by",
            "trusted_reason",
        )
        .order_by("rank", "-state_since", "name", "pk")[:NAMED]
    )
    named = [
        NamedRunner(
            runner,
            f"{prefix}{quote(runner.name, safe='')}/",
            Reason(runner.reason).label if runner.reason else "",
            runbook_for(runner.reason),
            freshness.reevaluating(runner, now),
        )
        for runner in worst
    ]
    not_healthy = counts["active"] - counts[f"state_{State.HEALTHY}"]
    alerts = []
    for rule, severity, reasons in RUNNER_RULES:
        for reason in reasons:
            count = counts[f"reason_{reason}"]
            if count:
                alerts.append(
                    OpenAlert(
                        rule,
                        severity,
                        f"{count} runner{'s' if count != 1 else ''}: {reason.label}",
                        runbook_for(reason),
                        f"{prefix}?reason={reason.value}",
                    )
                )
    return PanelData(
        {
            "fleet_url": prefix,
            "counts": counts,
            "states": [(str(s), counts[f"state_{s}"]) for s in State],
            "named": named,
            "more": max(0, not_healthy - len(named)),
        },
        alerts,
    )
