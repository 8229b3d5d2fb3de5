"""Version and name-label metrics for /metrics, computed from the database at scrape
time (registered from ``RunnersConfig.ready()``). Per-runner series exist only for
flagged active runners, so a healthy fleet of 10,000 adds none."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from controlplane import metrics
from runners import version_conf, versions
from runners.hygiene_fields import VersionStatus
from runners.models import Runner


class HygieneCollector:
    """Outdated runner versions and pool runners missing their name label."""

    name = "runner_hygiene"

    def collect(self) -> Iterable[Metric]:
        per_runner = GaugeMetricFamily(
            "controlplane_runner_version_outdated",
            "1 for an active runner a version rule flags (rule: below_minimum, which "
            "deploys pass over, or behind_latest).",
            labels=["runner", "rule", "version"],
        )
        label = GaugeMetricFamily(
            "controlplane_runner_missing_name_label",
            "1 for an active pool runner without its own name as a label (deploys "
            "pass it over).",
            labels=["runner"],
        )
        flagged = (
            Runner.objects.active()
            .filter(~Q(version_outdated="") | Q(missing_name_label=True))
            .order_by("name")
            .values_list(
                "name", "version_outdated", "runner_version", "missing_name_label"
            )
        )
        for name, rule, version, missing in flagged.iterator(2000):
            if rule:
                per_runner.add_metric([name, rule, version], 1)
            if missing:
                label.add_metric([name], 1)
        counts = Runner.objects.active().aggregate(
            **{
                str(status): Count("pk", filter=Q(version_outdated=status))
                for status in VersionStatus.values
                if status
            },
            unknown=Count("pk", filter=Q(runner_version="")),
            missing=Count("pk", filter=Q(missing_name_label=True)),
        )
        outdated = GaugeMetricFamily(
            "controlplane_runners_version_outdated",
            "Active runners each version rule flags.",
            labels=["rule"],
        )
        for status in VersionStatus.values:
            if status:
                outdated.add_metric([status], counts[status])
        yield from (per_runner, label, outdated)
        yield GaugeMetricFamily(
            "controlplane_runners_version_unknown",
            "Active runners whose version nothing reported yet.",
            value=counts["unknown"],
        )
        yield GaugeMetricFamily(
            "controlplane_runners_missing_name_label",
            "Active pool runners without their own name as a label.",
            value=counts["missing"],
        )
        if version_conf.follow_latest():
            release = versions.latest_release()
            if release is not None and release.fetched_at is not None:
                yield GaugeMetricFamily(
                    "controlplane_runner_release_read_age_seconds",
                    "Seconds since the newest runner release was read from GitHub.",
                    value=(timezone.now() - release.fetched_at).total_seconds(),
                )


metrics.register(HygieneCollector())
