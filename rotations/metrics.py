"""Secret rotation metrics for /metrics, computed from the database at scrape time.

Registered from ``RotationsConfig.ready()``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from controlplane import metrics
from rotations.models import SecretRotationSchedule, Status


class SecretsCollector:
    """Days until each scheduled secret is due, and how many are in each status."""

    name = "secrets"

    def collect(self) -> Iterable[Metric]:
        now = timezone.now()
        days = GaugeMetricFamily(
            "controlplane_secret_days_until_due",
            "Days until the secret is due for rotation (negative: overdue; absent: "
            "never rotated as far as anyone knows).",
            labels=["secret", "scope", "environment"],
        )
        status = GaugeMetricFamily(
            "controlplane_secret_status",
            "1 for the secret's current rotation status, 0 for the others.",
            labels=["secret", "scope", "environment", "status"],
        )
        counts: Counter[str] = Counter()
        rows = (
            SecretRotationSchedule.objects.with_status(now)
            .order_by("name", "pk")
            .values_list(  # type: ignore[misc]
                "name", "scope", "environment__name", "next_due", "status"
            )
        )
        for name, scope, env, next_due, current in rows:
            labels = [name, scope, env or ""]
            if next_due is not None:
                days.add_metric(labels, (next_due - now).total_seconds() / 86400)
            for value in Status.values:
                status.add_metric([*labels, value], 1 if value == current else 0)
            counts[current] += 1
        by_status = GaugeMetricFamily(
            "controlplane_secrets",
            "Scheduled secrets per rotation status.",
            labels=["status"],
        )
        for value in Status.values:
            by_status.add_metric([value], counts[value])
        return [days, status, by_status]


metrics.register(SecretsCollector())
