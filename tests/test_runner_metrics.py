"""Fleet metrics on /metrics: per-runner state, fleet counts, coverage, sync budget."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from controlplane.github import gateway
from controlplane.models import GitHubUsage
from runners.metrics import FleetCollector
from runners.models import Runner, RunnerSync, State
from tests.conftest import require_tool

pytestmark = pytest.mark.django_db


def scrape(client: Client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            samples[key] = sample.value
    return samples


def make_fleet() -> None:
    now = timezone.now()
    Runner.objects.create(
        name="prod-1",
        state=State.HEALTHY,
        last_heartbeat_at=now - timedelta(seconds=4),
        heartbeat_deadline=now + timedelta(seconds=16),
        github_seen_at=now - timedelta(seconds=30),
        github_status="online",
        exporter_url="http://prod-1:9100/metrics",
        exporter_ok=True,
        exporter_checked_at=now - timedelta(seconds=20),
    )
    Runner.objects.create(
        name="prod-2",
        state=State.UNHEALTHY,
        drained=True,
        last_heartbeat_at=now - timedelta(seconds=95),
        heartbeat_deadline=now - timedelta(seconds=75),
        # A GitHub reading older than GITHUB_STATUS_STALE_AFTER covers nothing.
        github_seen_at=now - timedelta(hours=2),
        exporter_url="http://prod-2:9100/metrics",
        exporter_ok=False,
        exporter_checked_at=now - timedelta(seconds=20),
    )
    Runner.objects.create(name="new-1")
    Runner.objects.create(name="gone-1", state=State.UNHEALTHY, removed_at=now)


def test_each_runner_reports_its_state_drain_and_heartbeat_age(client: Client) -> None:
    make_fleet()
    samples = scrape(client)
    for state in State.values:
        expected = 1 if state == "healthy" else 0
        key = f'controlplane_runner_state{{runner="prod-1",state="{state}"}}'
        assert samples[key] == expected
    assert samples['controlplane_runner_state{runner="prod-2",state="unhealthy"}'] == 1
    assert samples['controlplane_runner_state{runner="new-1",state="unknown"}'] == 1
    assert samples['controlplane_runner_drained{runner="prod-2"}'] == 1
    assert samples['controlplane_runner_drained{runner="prod-1"}'] == 0
    age = samples['controlplane_runner_heartbeat_age_seconds{runner="prod-2"}']
    assert 95 <= age < 120
    # Never heartbeated: no age at all rather than a made-up one.
    assert 'controlplane_runner_heartbeat_age_seconds{runner="new-1"}' not in samples
    # A removed runner's series end.
    assert not [key for key in samples if 'runner="gone-1"' in key]


def test_fleet_counts_coverage_and_removed(client: Client) -> None:
    make_fleet()
    samples = scrape(client)
    assert samples['controlplane_runners{state="healthy"}'] == 1
    assert samples['controlplane_runners{state="unhealthy"}'] == 1
    assert samples['controlplane_runners{state="unknown"}'] == 1
    assert samples['controlplane_runners{state="degraded"}'] == 0
    assert samples["controlplane_runners_drained"] == 1
    assert samples["controlplane_runners_removed"] == 1
    assert samples["controlplane_runners_exporter_configured"] == 2
    assert samples['controlplane_runner_signal_coverage{signal="github"}'] == 1
    assert samples['controlplane_runner_signal_coverage{signal="heartbeat"}'] == 1
    assert samples['controlplane_runner_signal_coverage{signal="exporter"}'] == 1
    assert samples['controlplane_metrics_collector_up{collector="runners"}'] == 1


def test_fleet_page_and_coverage_metric_agree_on_the_same_fleet(
    client: Client, viewer_client: Client
) -> None:
    # prod-2's exporter was probed recently but was unreachable: a fresh
    # observation, yet the exporter reports nothing, on the page as in the metric.
    make_fleet()

    samples = scrape(client)
    page = viewer_client.get("/fleet/").context["coverage"]

    metric = [
        samples[f'controlplane_runner_signal_coverage{{signal="{signal}"}}']
        for signal in ("github", "heartbeat", "exporter")
    ]
    active = sum(samples[f'controlplane_runners{{state="{s}"}}'] for s in State.values)
    assert [(c.signal, c.fresh, c.total) for c in page] == [
        ("GitHub status", metric[0], active),
        ("Heartbeat", metric[1], active),
        ("Exporter", metric[2], active),
    ]
    assert metric == [1, 1, 1]
    assert active == 3


def test_sync_budget_follows_the_fleet_size_and_the_token_limit(
    client: Client, settings: Any
) -> None:
    settings.GITHUB_BUDGET_SHARE = 0.2
    samples = scrape(client)
    assert samples["controlplane_runner_sync_budget_share"] == 0.2
    assert samples["controlplane_runner_sync_pages"] == 1
    assert samples["controlplane_runner_sync_interval_seconds"] == 15
    RunnerSync.objects.create(
        scope=gateway().runners_url, pages=[{"etag": None, "ids": []}] * 50
    )
    GitHubUsage.objects.create(pk=1, rate_limit_limit=5000)
    samples = scrape(client)
    assert samples["controlplane_runner_sync_pages"] == 50
    assert samples["controlplane_runner_sync_interval_seconds"] == pytest.approx(180)
    assert samples["controlplane_runner_sync_requests_per_hour"] == pytest.approx(1000)


@pytest.mark.parametrize("size", [4, 60])
def test_collector_queries_do_not_grow_with_the_fleet(
    size: int, django_assert_num_queries: Any
) -> None:
    Runner.objects.bulk_create(
        [Runner(name=f"r-{i}", last_heartbeat_at=timezone.now()) for i in range(size)]
    )
    # Per-runner rows, fleet counts, removed count, sync pages, token limit.
    with django_assert_num_queries(5):
        families = list(FleetCollector().collect())
    state = next(f for f in families if f.name == "controlplane_runner_state")
    assert len(state.samples) == size * len(State.values)


def test_metrics_with_a_fleet_pass_promtool(client: Client) -> None:
    promtool = require_tool("promtool")
    make_fleet()
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=client.get("/metrics").content,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
