"""Diagnostics metrics for /metrics, computed from the database at scrape time.

Registered from ``DiagnosticsConfig.ready()``. Runs are counted by kind and outcome
among those kept (the latest ``DIAGNOSTICS_KEEP`` per runner): a gauge, since
pruning deletes old runs; the time of the latest run to end each way survives
pruning of the others and is what an alert or a graph of "a diagnostics run timed
out" reads.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Max
from prometheus_client.core import GaugeMetricFamily, Metric

from diagnostics.models import HostRun

# A run's outcome, by its state: a diagnostics run succeeds only by reporting, an
# agent install by its job's success (the agent's first heartbeat recorded).
IN_FLIGHT = "in_flight"
OUTCOMES: dict[tuple[str, str], str] = {
    (HostRun.Kind.DIAGNOSTICS, HostRun.State.SUCCEEDED): "reported",
    (HostRun.Kind.AGENT_INSTALL, HostRun.State.SUCCEEDED): "installed",
}


def outcome(kind: str, state: str) -> str:
    if state not in HostRun.FINAL_STATES:
        return IN_FLIGHT
    return OUTCOMES.get((kind, state), str(state))


def outcomes(kind: str) -> list[str]:
    """Every outcome a run of ``kind`` can have, in_flight first."""
    return [
        outcome(kind, state) for state in (HostRun.State.RUNNING, *HostRun.FINAL_STATES)
    ]


class DiagnosticsCollector:
    """Diagnostics and agent-install runs by kind and outcome, in one query."""

    name = "diagnostics"

    def collect(self) -> Iterable[Metric]:
        runs = GaugeMetricFamily(
            "controlplane_diagnostics_runs",
            "Diagnostics and agent-install runs kept (the latest DIAGNOSTICS_KEEP "
            "per runner) by kind and outcome: in_flight, reported (diagnostics), "
            "installed (agent install), failed, timed_out, cancelled (a canary "
            "that gave way to an SRE's run).",
            labels=["kind", "outcome"],
        )
        last = GaugeMetricFamily(
            "controlplane_diagnostics_last_finished_timestamp_seconds",
            "When the latest run of this kind ended with this outcome (Unix time; "
            "absent: none kept).",
            labels=["kind", "outcome"],
        )
        counts: dict[tuple[str, str], int] = {}
        latest: dict[tuple[str, str], float] = {}
        rows = (
            HostRun.objects.order_by()
            .values_list("kind", "state")
            .annotate(n=Count("pk"), ended=Max("finished_at"))
        )
        for kind, state, n, ended in rows:
            key = (kind, outcome(kind, state))
            counts[key] = counts.get(key, 0) + n
            if ended is not None:
                latest[key] = max(latest.get(key, 0.0), ended.timestamp())
        for kind in HostRun.Kind:
            for name in outcomes(kind):
                runs.add_metric([kind, name], counts.get((kind, name), 0))
                if (kind, name) in latest:
                    last.add_metric([kind, name], latest[(kind, name)])
        yield runs
        yield last
