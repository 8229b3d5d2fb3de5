"""Fleet metrics for /metrics, computed from the database at scrape time.

Registered from ``RunnersConfig.ready()``. Per-runner families cover active runners
only (a removed runner's series end); the sync and sweep durations and last
successes come from ``TaskStatus`` (``controlplane_task_*{task="runner_sync"}``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from controlplane import metrics
from runners.freshness import SIGNALS
from runners.models import Runner
from runners.states import State
from runners.sync import sync_budget


class FleetCollector:
    """Runner health per runner and for the fleet, signal coverage, sync budget."""

    name = "runners"

    def collect(self) -> Iterable[Metric]:
        now = timezone.now()
        yield from self._per_runner(now)
        yield from self._fleet(now)
        yield from self._budget()

    def _per_runner(self, now: datetime) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "controlplane_runner_state",
            "1 for the runner's current health state, 0 for the others.",
            labels=["runner", "state"],
        )
        drained = GaugeMetricFamily(
            "controlplane_runner_drained",
            "1 if an SRE took the runner out of deploy rotation.",
            labels=["runner"],
        )
        reason = GaugeMetricFamily(
            "controlplane_runner_reason",
            "1 for the primary reason of a runner's state (absent: no reason; the "
            "runbook for each is listed at /runbooks/).",
            labels=["runner", "reason"],
        )
        age = GaugeMetricFamily(
            "controlplane_runner_heartbeat_age_seconds",
            "Seconds since the runner's last heartbeat (absent: never heartbeated).",
            labels=["runner"],
        )
        rows = (
            Runner.objects.active()
            .order_by("name")
            .values_list(
                "name",
                "state",
                "drained",
                "last_heartbeat_at",
                "reason",
                "trusted_until",
            )
        )
        trusted = GaugeMetricFamily(
            "controlplane_runner_trusted",
            "1 while an SRE's trust override lets deploys go to the runner whatever "
            "its health (absent: no override, in force or ended).",
            labels=["runner"],
        )
        trust_ended = GaugeMetricFamily(
            "controlplane_runner_trust_expired_seconds",
            "Seconds since the runner's trust override ran out by itself (absent: "
            "none ran out, or an SRE ended or replaced it).",
            labels=["runner"],
        )
        for name, current, is_drained, last_heartbeat, why, until in rows.iterator(
            2000
        ):
            if until is not None and until > now:
                trusted.add_metric([name], 1)
            elif until is not None:
                trust_ended.add_metric([name], (now - until).total_seconds())
            for value in State.values:
                state.add_metric([name, value], 1 if value == current else 0)
            if why:
                reason.add_metric([name, why], 1)
            drained.add_metric([name], 1 if is_drained else 0)
            if last_heartbeat is not None:
                age.add_metric([name], max(0.0, (now - last_heartbeat).total_seconds()))
        return [state, drained, age, reason, trusted, trust_ended]

    def _fleet(self, now: datetime) -> Iterable[Metric]:
        counts = Runner.objects.active().coverage(
            now,
            **{
                f"state_{value}": Count("pk", filter=Q(state=value))
                for value in State.values
            },
            drained=Count("pk", filter=Q(drained=True)),
            trusted=Count("pk", filter=Q(trusted_until__gt=now)),
            exporter_configured=Count("pk", filter=~Q(exporter_url="")),
        )
        removed = Runner.objects.filter(removed_at__isnull=False).count()
        by_state = GaugeMetricFamily(
            "controlplane_runners",
            "Active runners (listed by GitHub or registered) by health state.",
            labels=["state"],
        )
        for value in State.values:
            by_state.add_metric([value], counts[f"state_{value}"])
        coverage = GaugeMetricFamily(
            "controlplane_runner_signal_coverage",
            "Active runners the signal reports for: a fresh heartbeat, a fresh GitHub "
            "status, a fresh successful exporter probe.",
            labels=["signal"],
        )
        for signal in SIGNALS:
            coverage.add_metric([signal], counts[signal])
        return [
            by_state,
            GaugeMetricFamily(
                "controlplane_runners_drained",
                "Active runners taken out of deploy rotation.",
                value=counts["drained"],
            ),
            GaugeMetricFamily(
                "controlplane_runner_trust_overrides",
                "Active runners an SRE trusts for deploys now, whatever their health.",
                value=counts["trusted"],
            ),
            GaugeMetricFamily(
                "controlplane_runners_removed",
                "Runners GitHub no longer lists, kept with their history.",
                value=removed,
            ),
            coverage,
            GaugeMetricFamily(
                "controlplane_runners_exporter_configured",
                "Active runners with an exporter URL to probe.",
                value=counts["exporter_configured"],
            ),
        ]

    def _budget(self) -> Iterable[Metric]:
        budget = sync_budget()
        return [
            GaugeMetricFamily(
                "controlplane_runner_sync_budget_share",
                "Share of the GitHub hourly limit the runner sync may use.",
                value=budget.share,
            ),
            GaugeMetricFamily(
                "controlplane_runner_sync_interval_seconds",
                "Seconds between runner sync sweeps, adapted to the fleet size.",
                value=budget.interval_seconds,
            ),
            GaugeMetricFamily(
                "controlplane_runner_sync_pages",
                "Pages of 100 runners one sync sweep reads.",
                value=budget.pages_per_sweep,
            ),
            GaugeMetricFamily(
                "controlplane_runner_sync_requests_per_hour",
                "GitHub requests per hour the runner sync spends at most.",
                value=budget.requests_per_hour,
            ),
        ]


metrics.register(FleetCollector())
