"""Deploy and notification metrics for /metrics, computed from the database.

Registered from ``DeploysConfig.ready()``. One query per family. Counts of final
runs and failovers are exposed as counters: they only grow while deploy history is
kept. Durations, queue waits and pickup times are summaries without quantiles
(``_sum`` and ``_count`` per label set), so ``rate(_sum) / rate(_count)`` gives the
mean over any window; a histogram would need a bucket scan per scrape.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from controlplane import metrics
from controlplane.models import Notification
from deploys.dora import DoraCollector
from deploys.models import (
    DeployAttempt,
    DeployRun,
    Environment,
    WebhookDelivery,
    WebhookRedelivery,
)


def _elapsed(end: str, start: str) -> ExpressionWrapper[Any]:
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


def _seconds(value: Any) -> float:
    # Sum() of a duration is a timedelta on PostgreSQL and SQLite alike (Django
    # converts SQLite's microseconds); None when no row matched.
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value or 0)


class DeployCollector:
    """Deploy outcomes, durations, failovers, queue wait, pickup, active and queued."""

    name = "deploys"

    def collect(self) -> Iterable[Metric]:
        yield self._outcomes()
        yield self._summary(
            "controlplane_deploy_duration_seconds",
            "Seconds from leaving the queue to the final state, of finished deploys.",
            DeployRun.objects.filter(
                state__in=DeployRun.FINAL_STATES,
                started_at__isnull=False,
                finished_at__isnull=False,
            ),
            ["environment__name", "state"],
            ["environment", "outcome"],
            _elapsed("finished_at", "started_at"),
        )
        yield self._summary(
            "controlplane_deploy_queue_wait_seconds",
            "Seconds deploys waited in the queue before gating started.",
            DeployRun.objects.filter(started_at__isnull=False),
            ["environment__name"],
            ["environment"],
            _elapsed("started_at", "created_at"),
        )
        yield self._summary(
            "controlplane_deploy_pickup_seconds",
            "Seconds from dispatch until a runner picked the deploy job up.",
            DeployAttempt.objects.filter(
                picked_up_at__isnull=False, dispatched_at__isnull=False
            ),
            ["run__environment__name"],
            ["environment"],
            _elapsed("picked_up_at", "dispatched_at"),
        )
        yield self._failovers()
        yield from self._in_flight()

    def _outcomes(self) -> Metric:
        family = CounterMetricFamily(
            "controlplane_deploys",
            "Finished deploys by environment and outcome.",
            labels=["environment", "outcome"],
        )
        rows = (
            DeployRun.objects.filter(state__in=DeployRun.FINAL_STATES)
            .values_list("environment__name", "state")
            .annotate(n=Count("pk"))
            .order_by("environment__name", "state")
        )
        for environment, outcome, n in rows:
            family.add_metric([environment, outcome], n)
        return family

    def _summary(
        self,
        name: str,
        documentation: str,
        queryset: Any,
        group_by: list[str],
        labels: list[str],
        elapsed: ExpressionWrapper[Any],
    ) -> Metric:
        family = SummaryMetricFamily(name, documentation, labels=labels)
        rows = (
            queryset.values(*group_by)
            .annotate(n=Count("pk"), total=Sum(elapsed))
            .order_by(*group_by)
        )
        for row in rows:
            family.add_metric(
                [str(row[field]) for field in group_by],
                count_value=row["n"],
                sum_value=max(0.0, _seconds(row["total"])),
            )
        return family

    def _failovers(self) -> Metric:
        family = CounterMetricFamily(
            "controlplane_deploy_failovers",
            "Deploy attempts abandoned for the next runner, by environment and reason.",
            labels=["environment", "reason"],
        )
        rows = (
            DeployAttempt.objects.exclude(failover_reason="")
            .values_list("run__environment__name", "failover_reason")
            .annotate(n=Count("pk"))
            .order_by("run__environment__name", "failover_reason")
        )
        for environment, reason, n in rows:
            family.add_metric([environment, reason], n)
        return family

    def _in_flight(self) -> Iterable[Metric]:
        active = GaugeMetricFamily(
            "controlplane_deploys_active",
            "Deploys gating, dispatching or running, by environment.",
            labels=["environment"],
        )
        queued = GaugeMetricFamily(
            "controlplane_deploys_queued",
            "Deploys waiting in the queue, by environment.",
            labels=["environment"],
        )
        # Every environment appears, with 0s: an absent series cannot be alerted on.
        rows = (
            Environment.objects.order_by("name")
            .annotate(
                active=Count(
                    "deploys", filter=Q(deploys__state__in=DeployRun.ACTIVE_STATES)
                ),
                queued=Count(
                    "deploys", filter=Q(deploys__state=DeployRun.State.QUEUED)
                ),
            )
            .values_list("name", "active", "queued")
        )
        for name, n_active, n_queued in rows:
            active.add_metric([name], n_active)
            queued.add_metric([name], n_queued)
        return [active, queued]


class NotificationCollector:
    """The notification outbox by state (sent, failed, pending)."""

    name = "notifications"

    def collect(self) -> Iterable[Metric]:
        counts = dict(
            Notification.objects.values_list("state")
            .annotate(n=Count("pk"))
            .order_by("state")
        )
        family = GaugeMetricFamily(
            "controlplane_notifications",
            "Notifications in the outbox by state (sent, failed, pending).",
            labels=["state"],
        )
        for state in Notification.State.values:
            family.add_metric([state], counts.get(state, 0))
        return [family]


class DeployAlertCollector:
    """What the deploy alerts watch: failures by reason, jobs waiting for a runner."""

    name = "deploy_alerts"

    def collect(self) -> Iterable[Metric]:
        failures = CounterMetricFamily(
            "controlplane_deploy_failures",
            "Failed deploys by environment and reason (each reason has a runbook).",
            labels=["environment", "reason"],
        )
        rows = (
            DeployRun.objects.filter(state=DeployRun.State.FAILED)
            .values_list("environment__name", "reason")
            .annotate(n=Count("pk"))
            .order_by("environment__name", "reason")
        )
        for environment, reason, n in rows:
            failures.add_metric([environment, reason], n)
        awaiting = GaugeMetricFamily(
            "controlplane_deploys_awaiting_pickup",
            "Deploy attempts dispatched to GitHub and not picked up by a runner yet.",
            labels=["environment"],
        )
        # Every environment appears, with 0s, so the alert can see it clear.
        waiting = (
            Environment.objects.order_by("name")
            .annotate(
                n=Count(
                    "deploys__attempts",
                    filter=Q(deploys__attempts__state=DeployAttempt.State.DISPATCHED),
                )
            )
            .values_list("name", "n")
        )
        for environment, n in waiting:
            awaiting.add_metric([environment], n)
        return [failures, awaiting]


class WebhookCollector:
    """Stored webhook deliveries by outcome, and the redeliveries recovery asked for."""

    name = "webhooks"

    def collect(self) -> Iterable[Metric]:
        counts = dict(
            WebhookDelivery.objects.values_list("outcome")
            .annotate(n=Count("pk"))
            .order_by("outcome")
        )
        deliveries = GaugeMetricFamily(
            "controlplane_webhook_deliveries",
            "Webhook deliveries stored (kept WEBHOOK_RETENTION_DAYS) by outcome: "
            "matched, unmatched, ignored, failed, pending.",
            labels=["outcome"],
        )
        # Every outcome appears, with 0s, so a rule can see an increase from none.
        for outcome in WebhookDelivery.Outcome.values:
            deliveries.add_metric([outcome], counts.get(outcome, 0))
        asked = WebhookRedelivery.objects.aggregate(n=Sum("attempts"))["n"] or 0
        redeliveries = GaugeMetricFamily(
            "controlplane_webhook_redeliveries_requested",
            "Redeliveries the recovery task asked GitHub for, over the retention.",
            value=asked,
        )
        return [deliveries, redeliveries]


metrics.register(DeployCollector())
metrics.register(WebhookCollector())
metrics.register(NotificationCollector())
metrics.register(DeployAlertCollector())
metrics.register(DoraCollector())
