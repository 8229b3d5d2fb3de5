"""Prometheus metrics: this process's own, plus figures computed from the database.

Fleet, deploy, GitHub and task figures describe the database, not a process, so
every web process reports the same values however many gunicorn workers and Celery
processes run. Each app adds its figures with a collector registered once, in its
``AppConfig.ready()``::

    from controlplane import metrics

    class FleetCollector:
        name = "fleet"

        def collect(self) -> Iterable[Metric]:
            ...  # one query per metric family, never one per row

    metrics.register(FleetCollector())

A collector that fails (a query error, a bug) costs only its own families: the
scrape still succeeds and ``controlplane_metrics_collector_up{collector=NAME}`` is 0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from controlplane import broker
from controlplane.celery import app
from controlplane.models import (
    BEAT_LEASE,
    GitHubPurposeUsage,
    GitHubUsage,
    Lease,
    TaskStatus,
)

logger = logging.getLogger(__name__)

# The classic text format (legacy names, underscores only), which every Prometheus
# release reads; generate_latest() writes exactly that by default.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class DatabaseCollector(Protocol):
    """Computes metric families from the database each time /metrics is scraped."""

    name: str

    def collect(self) -> Iterable[Metric]: ...


_collectors: dict[str, DatabaseCollector] = {}


def register(collector: DatabaseCollector) -> DatabaseCollector:
    """Add ``collector`` to every scrape; registering a name again replaces it."""
    _collectors[collector.name] = collector
    return collector


def collectors() -> list[DatabaseCollector]:
    return list(_collectors.values())


class GitHubUsageCollector:
    """GitHub API counters kept by every process, and the budget GitHub last reported."""

    name = "github"

    COUNTERS = (
        ("requests_total", "Responses received from the GitHub API."),
        ("not_modified_total", "GitHub responses that were 304 Not Modified (free)."),
        ("errors_total", "GitHub calls that failed after all retries."),
        ("retries_total", "GitHub calls retried after a transient failure."),
        ("rate_limited_total", "GitHub responses refused for a rate limit."),
    )

    def collect(self) -> Iterable[Metric]:
        usage = GitHubUsage.objects.filter(pk=1).first()
        for field, documentation in self.COUNTERS:
            family = CounterMetricFamily(f"controlplane_github_{field}", documentation)
            family.add_metric([], getattr(usage, field) if usage else 0)
            yield family
        # No observation yet is left out rather than reported as 0: an empty budget
        # would page someone.
        if usage is None:
            return
        for name, documentation, value in (
            (
                "controlplane_github_rate_limit_remaining",
                "Requests left in the current rate-limit window, as GitHub last said.",
                usage.rate_limit_remaining,
            ),
            (
                "controlplane_github_rate_limit_limit",
                "Requests allowed per rate-limit window, as GitHub last said.",
                usage.rate_limit_limit,
            ),
            (
                "controlplane_github_rate_limit_reset_timestamp_seconds",
                "When the current rate-limit window ends (Unix time).",
                usage.rate_limit_reset,
            ),
            (
                "controlplane_github_usage_observed_timestamp_seconds",
                "When a GitHub response was last counted (Unix time).",
                usage.observed_at.timestamp() if usage.observed_at else None,
            ),
        ):
            if value is not None:
                yield GaugeMetricFamily(name, documentation, value=value)


class GitHubPurposeCollector:
    """GitHub API responses by why they were requested (the budget by purpose)."""

    name = "github_purpose"

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "controlplane_github_purpose_requests",
            "Responses received from the GitHub API, by why they were requested.",
            labels=["purpose"],
        )
        not_modified = CounterMetricFamily(
            "controlplane_github_purpose_not_modified",
            "GitHub responses that were 304 Not Modified (free), by purpose.",
            labels=["purpose"],
        )
        for row in GitHubPurposeUsage.objects.all():
            requests.add_metric([row.purpose], row.requests_total)
            not_modified.add_metric([row.purpose], row.not_modified_total)
        yield requests
        yield not_modified


class TaskStatusCollector:
    """When each periodic job last succeeded and failed, and how long it last took."""

    name = "tasks"

    def collect(self) -> Iterable[Metric]:
        success = GaugeMetricFamily(
            "controlplane_task_last_success_timestamp_seconds",
            "When the periodic job last succeeded (Unix time).",
            labels=["task"],
        )
        failure = GaugeMetricFamily(
            "controlplane_task_last_failure_timestamp_seconds",
            "When the periodic job last failed (Unix time).",
            labels=["task"],
        )
        duration = GaugeMetricFamily(
            "controlplane_task_last_duration_seconds",
            "How long the periodic job's last run took.",
            labels=["task"],
        )
        for status in TaskStatus.objects.all():
            if status.last_success_at:
                success.add_metric([status.name], status.last_success_at.timestamp())
            if status.last_failure_at:
                failure.add_metric([status.name], status.last_failure_at.timestamp())
            duration.add_metric([status.name], status.last_duration_seconds)
        return [success, failure, duration]


class BrokerCollector:
    """Messages the embedded broker's readers set aside as unreadable.

    Counted from the folder at scrape time: the readers are worker processes whose
    own counters this web process cannot see, and the folder is the state an
    operator acts on (the figure drops once they deal with the files). Other
    brokers never set a message aside: 0, so the alert's series always exists.
    """

    name = "broker"

    def collect(self) -> Iterable[Metric]:
        embedded = app.conf.broker_url.startswith(broker.SCHEMES)
        yield GaugeMetricFamily(
            "controlplane_broker_unreadable_messages",
            "Broker messages that could not be decoded, set aside for inspection.",
            value=(
                broker.unreadable_messages(app.conf.broker_transport_options)
                if embedded
                else 0
            ),
        )


class BeatLeaderCollector:
    """Which Celery beat sends the periodic tasks now (none: no beat holds the lease)."""

    name = "beat"

    def collect(self) -> Iterable[Metric]:
        leader = GaugeMetricFamily(
            "controlplane_beat_leader_info",
            "1 for the Celery beat (host:pid:nonce) holding the beat lease; absent if none.",
            labels=["holder"],
        )
        if holder := Lease.objects.holder_of(BEAT_LEASE):
            leader.add_metric([holder], 1)
        return [leader]


class _DatabaseCollectors:
    """Runs every registered collector, each isolated from the others' failures."""

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "controlplane_metrics_collector_up",
            "1 if the collector computed its metrics for this scrape, 0 if it failed.",
            labels=["collector"],
        )
        for collector in collectors():
            try:
                # Materialised here so a failure halfway leaves no partial families.
                families = list(collector.collect())
            except Exception:
                logger.exception("metrics collector %s failed", collector.name)
                up.add_metric([collector.name], 0)
                continue
            up.add_metric([collector.name], 1)
            yield from families
        yield up


def render() -> bytes:
    """The text exposition of process metrics and every database collector.

    With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn with several workers), the
    process metrics are those of all workers summed, read from the shared directory.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        process_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(process_registry)  # type: ignore[no-untyped-call]
    else:
        process_registry = REGISTRY
    database_registry = CollectorRegistry()
    database_registry.register(_DatabaseCollectors())
    return generate_latest(process_registry) + generate_latest(database_registry)


register(GitHubUsageCollector())
register(GitHubPurposeCollector())
register(TaskStatusCollector())
register(BrokerCollector())
register(BeatLeaderCollector())
