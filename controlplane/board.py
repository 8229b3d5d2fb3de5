"""The home page's status board: what is broken now, from every app.

Each app registers a panel from its ``ready()`` (``register_panel``): a template and
a function that reads what the panel shows at ``now`` in a fixed number of queries,
whatever the fleet's size, and names the alerts its data would fire. The floor's own
panel (background tasks and the GitHub API budget) is defined here.

Alerts are the control plane's own Prometheus rules (``monitoring/prometheus/
alerts.yml``) evaluated on its own data: the board names the rule and links its
runbook, so the person looking sees what Alertmanager would page about. A rule's
``for:`` duration is not waited for: the board shows a condition as soon as it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.runbooks import runbook_url

SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class OpenAlert:
    """An alert rule whose condition holds now."""

    rule: str  # the Prometheus alert's name
    severity: str  # critical | warning
    summary: str
    runbook: str  # runbook slug
    url: str = ""  # the page about it, if any

    @property
    def runbook_url(self) -> str:
        return runbook_url(self.runbook)


@dataclass
class PanelData:
    """What one panel's template shows, and the alerts its data raises."""

    context: dict[str, Any]
    alerts: list[OpenAlert] = field(default_factory=list)


@dataclass(frozen=True)
class Panel:
    name: str
    position: int
    template: str
    build: Callable[[datetime], PanelData]


PANELS: dict[str, Panel] = {}


def register_panel(
    name: str, template: str, build: Callable[[datetime], PanelData], *, position: int
) -> None:
    """Show ``template`` on the board, ordered by ``position``, with the context
    ``build(now)`` returns (registering ``name`` again replaces it)."""
    PANELS[name] = Panel(name, position, template, build)


@dataclass(frozen=True)
class Board:
    panels: dict[str, tuple[str, dict[str, Any]]]  # name -> (template, context)
    alerts: list[OpenAlert]


def build_board(now: datetime) -> Board:
    panels: dict[str, tuple[str, dict[str, Any]]] = {}
    alerts: list[OpenAlert] = []
    for panel in sorted(PANELS.values(), key=lambda p: p.position):
        data = panel.build(now)
        panels[panel.name] = (panel.template, data.context)
        alerts.extend(data.alerts)
    alerts.sort(key=lambda a: (SEVERITY_RANK.get(a.severity, 9), a.rule, a.summary))
    return Board(panels, alerts)


# The floor's own panel ------------------------------------------------------------

# GitHubRateLimitLow: below this share of the hourly limit left.
RATE_LIMIT_LOW = 0.1


def operations_panel(now: datetime) -> PanelData:
    """Background tasks (which watched ones are stale), the beat leader and the
    GitHub API budget: three queries."""
    from controlplane.liveness import stale_among
    from controlplane.models import BEAT_LEASE, GitHubUsage, Lease, TaskStatus

    tasks = list(TaskStatus.objects.order_by("name"))
    stale = stale_among(tasks, now)
    usage = GitHubUsage.objects.filter(pk=1).first()
    alerts = [
        OpenAlert(
            "ControlPlaneTaskStale",
            "warning",
            f"The {s.job.label} has "
            + (
                f"not succeeded for {round(s.seconds_since)} s"
                if s.seconds_since is not None
                else "never succeeded"
            )
            + f": {s.job.consequence}",
            s.job.runbook,
        )
        for s in stale
    ]
    if (
        usage is not None
        and usage.rate_limit_remaining is not None
        and usage.rate_limit_limit
        and usage.rate_limit_remaining / usage.rate_limit_limit < RATE_LIMIT_LOW
    ):
        alerts.append(
            OpenAlert(
                "GitHubRateLimitLow",
                "warning",
                f"GitHub API budget low: {usage.rate_limit_remaining} of "
                f"{usage.rate_limit_limit} requests left",
                "github-api-budget",
            )
        )
    stale_names = {s.job.name for s in stale}
    return PanelData(
        {
            "tasks": tasks,
            # Also the banner base.html shows on every page: read here once.
            "stale_jobs": stale,
            "stale_names": stale_names,
            "usage": usage,
            "beat_leader": Lease.objects.holder_of(BEAT_LEASE),
        },
        alerts,
    )


register_panel(
    "operations", "controlplane/_board_operations.html", operations_panel, position=90
)
