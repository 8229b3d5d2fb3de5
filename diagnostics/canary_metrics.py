"""Canary metrics for /metrics, computed from the database at scrape time.

``controlplane_runner_canary_pickup_seconds`` is a histogram per runner of dispatch
→ pickup over the canaries kept (``CANARY_KEEP`` per runner): a window, not a
counter since start, so use its quantiles, not ``rate()``.
``controlplane_runner_canary_last_result`` is 1 when the runner's latest canary
passed, 0 when it failed or was not picked up (absent: none ended yet).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from diagnostics.models import HostRun
from runners.models import Runner

# Seconds: a runner takes a queued job within seconds when it is idle and well.
BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class CanaryCollector:
    """Pickup latency per runner and the latest canary's result."""

    name = "canary"

    def collect(self) -> Iterable[Metric]:
        yield from self._pickup()
        yield self._last_result()

    def _pickup(self) -> Iterable[Metric]:
        histogram = HistogramMetricFamily(
            "controlplane_runner_canary_pickup_seconds",
            "Seconds from a canary's dispatch until its runner took the job, over "
            "the canaries kept per runner.",
            labels=["runner"],
        )
        samples: dict[str, list[float]] = defaultdict(list)
        rows = HostRun.objects.filter(
            kind=HostRun.Kind.CANARY,
            started_at__isnull=False,
            runner__removed_at__isnull=True,
        ).values_list("runner__name", "requested_at", "started_at")
        for name, requested_at, started_at in rows:
            if started_at is not None:  # filtered above; the type does not know
                seconds = (started_at - requested_at).total_seconds()
                samples[name].append(max(0.0, seconds))
        for name in sorted(samples):
            values = samples[name]
            buckets = [
                (str(bound), float(sum(1 for v in values if v <= bound)))
                for bound in BUCKETS
            ]
            buckets.append(("+Inf", float(len(values))))
            histogram.add_metric([name], buckets, sum(values))
        yield histogram

    def _last_result(self) -> Metric:
        gauge = GaugeMetricFamily(
            "controlplane_runner_canary_last_result",
            "1 if the runner's latest canary passed, 0 if it failed or was not "
            "picked up in time.",
            labels=["runner"],
        )
        rows = (
            Runner.objects.active()
            .filter(canary_checked_at__isnull=False)
            .order_by("name")
            .values_list("name", "canary_failing")
        )
        for name, failing in rows:
            gauge.add_metric([name], 0.0 if failing else 1.0)
        return gauge
