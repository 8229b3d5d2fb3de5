"""What the runner page and the API show about a runner's diagnostics: the latest
report, the history, what changed since the previous report, and the offers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.runbooks import runbook_url
from diagnostics.models import HostRun
from diagnostics.report import changes
from runners.models import Runner

HISTORY = 10
NO_SSH_RUNBOOK = "runner-no-ssh"
EXPORTER_RUNBOOK = "exporter-unreachable"


@dataclass
class Summary:
    in_flight: HostRun | None
    latest: HostRun | None
    previous: HostRun | None
    history: list[HostRun]
    changes: list[dict[str, Any]] = field(default_factory=list)
    # Heartbeats missing: the page offers to install the agent through a workflow.
    offer_agent: bool = False
    # The exporter cannot be read from the control plane's side.
    exporter_unreachable: bool = False
    no_ssh_runbook: str = ""
    exporter_runbook: str = ""


def summarize(runner: Runner, now: datetime) -> Summary:
    """One query for the runner's recent runs; a second one for its last two
    reports only when the runs shown are not all it has."""
    # Canaries have their own strip (diagnostics.templatetags.canary).
    runs = HostRun.objects.filter(runner=runner).exclude(kind=HostRun.Kind.CANARY)
    history = list(runs[: HISTORY + 1])
    complete = len(history) <= HISTORY
    history = history[:HISTORY]
    in_flight = next((run for run in history if run.finished_at is None), None)
    if complete:
        reports = [run for run in history if run.reported_at is not None]
        reports.sort(key=lambda run: (run.reported_at, run.pk), reverse=True)
    else:
        reports = list(
            runs.filter(reported_at__isnull=False).order_by("-reported_at", "-pk")[:2]
        )
    latest, previous = (reports + [None, None])[:2]
    for run in [*history, *filter(None, (latest, previous))]:
        run.runner = runner  # shown by name: no query per run
    return Summary(
        in_flight=in_flight,
        latest=latest,
        previous=previous,
        history=history,
        changes=changes(previous.facts, latest.facts) if latest and previous else [],
        offer_agent=not runner.heartbeat_is_fresh(now),
        exporter_unreachable=bool(
            runner.exporter_checked_at and not runner.exporter_ok
        ),
        no_ssh_runbook=runbook_url(NO_SSH_RUNBOOK) or "",
        exporter_runbook=runbook_url(EXPORTER_RUNBOOK) or "",
    )
