"""``controlplane_runners_stale``: runners proposed for removal (``runners.retention``),
computed from the database at scrape time. Registered on import, from
``RunnersConfig.ready()``."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from controlplane import metrics
from runners.models import Runner
from runners.retention_conf import stale_after


class StaleRunnerCollector:
    """How many active runners GitHub has reported offline past
    ``RUNNER_STALE_AFTER_DAYS``, in a pool or not. One query."""

    name = "stale_runners"

    def collect(self) -> Iterable[Metric]:
        cutoff = timezone.now() - stale_after()
        counts = (
            Runner.objects.active()
            .filter(github_status="offline", offline_since__lte=cutoff)
            .aggregate(
                total=Count("pk", distinct=True),
                pooled=Count("pk", filter=Q(pool_entries__isnull=False), distinct=True),
            )
        )
        family = GaugeMetricFamily(
            "controlplane_runners_stale",
            "Runners GitHub has reported offline for RUNNER_STALE_AFTER_DAYS, proposed "
            "for removal on /retention/ (in_pool: wait for an SRE to take them out "
            "of the pool first).",
            labels=["in_pool"],
        )
        family.add_metric(["true"], counts["pooled"])
        family.add_metric(["false"], counts["total"] - counts["pooled"])
        yield family


metrics.register(StaleRunnerCollector())
