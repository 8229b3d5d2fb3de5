"""/healthz, /readyz and /metrics: what load balancers, Compose and Prometheus see."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from controlplane import metrics
from controlplane.celery import app
from controlplane.liveness import watched_jobs
from controlplane.models import GitHubUsage, TaskStatus
from tests.conftest import require_tool

CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"


def scrape(client: Client) -> dict[str, float]:
    """Every sample of one /metrics response, keyed ``name{label="value",...}``."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = (
                sample.value
            )
    return samples


BrokerSetter = Callable[[str, dict[str, str]], None]


@pytest.fixture
def use_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[BrokerSetter]:
    """Points the Celery app at another broker for one test."""
    saved = {key: app.conf[key] for key in ("broker_url", "broker_transport_options")}

    def use(url: str, transport_options: dict[str, str]) -> None:
        # Celery reads CELERY_BROKER_URL from the environment before its settings.
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        app.conf.update(broker_url=url, broker_transport_options=transport_options)

    yield use
    app.conf.update(saved)


def test_healthz_answers_without_touching_the_database(client: Client) -> None:
    # No django_db mark: pytest-django makes any query here an error.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ok_when_database_and_broker_answer(client: Client) -> None:
    for job in watched_jobs():
        TaskStatus.objects.record(job.name, ok=True, duration=0.1)
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "failed": [],
        "checks": {"database": "ok", "broker": "ok"},
        "stale_jobs": [],
    }


@pytest.mark.django_db
def test_readyz_names_the_broker_when_it_is_unreachable(
    client: Client, use_broker: BrokerSetter
) -> None:
    use_broker(CLOSED_PORT_REDIS, {})
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] == "failed: OperationalError"
    # The page needs no login: connection details stay in the log.
    assert "127.0.0.1" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_fails_when_the_filesystem_broker_folder_is_missing(
    client: Client, use_broker: BrokerSetter, tmp_path: Path
) -> None:
    folder = str(tmp_path / "gone")
    use_broker("filesystem://", {"data_folder_in": folder, "data_folder_out": folder})
    assert client.get("/readyz").json()["failed"] == ["broker"]
    (tmp_path / "gone").mkdir()
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_ops_endpoints_need_no_login(client: Client) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path


@pytest.mark.django_db
def test_metrics_report_github_usage_from_the_database(client: Client) -> None:
    headers = {
        "x-ratelimit-remaining": "4321",
        "x-ratelimit-limit": "5000",
        "x-ratelimit-reset": "1900000000",
    }
    for _ in range(7):
        GitHubUsage.objects.record(counter="requests_total", headers=headers)
    for _ in range(3):
        GitHubUsage.objects.record(counter="not_modified_total")
    GitHubUsage.objects.record(counter="retries_total")
    GitHubUsage.objects.record(counter="rate_limited_total")

    samples = scrape(client)

    assert samples["controlplane_github_requests_total"] == 7
    assert samples["controlplane_github_not_modified_total"] == 3
    assert samples["controlplane_github_errors_total"] == 0
    assert samples["controlplane_github_retries_total"] == 1
    assert samples["controlplane_github_rate_limited_total"] == 1
    assert samples["controlplane_github_rate_limit_remaining"] == 4321
    assert samples["controlplane_github_rate_limit_limit"] == 5000
    assert samples["controlplane_github_rate_limit_reset_timestamp_seconds"] == (
        1900000000
    )
    usage = GitHubUsage.objects.get()
    assert usage.observed_at is not None
    assert samples["controlplane_github_usage_observed_timestamp_seconds"] == (
        pytest.approx(usage.observed_at.timestamp())
    )
    assert samples['controlplane_metrics_collector_up{collector="github"}'] == 1
    # Django's own request metrics come from django-prometheus's middleware.
    assert any(name.startswith("django_http_requests_total") for name in samples)


@pytest.mark.django_db
def test_metrics_before_any_github_call_report_zero_counts_and_no_budget(
    client: Client,
) -> None:
    samples = scrape(client)
    assert samples["controlplane_github_requests_total"] == 0
    # An unknown budget is absent, not 0 (which would read as exhausted).
    assert "controlplane_github_rate_limit_remaining" not in samples


@pytest.mark.django_db
def test_metrics_report_each_periodic_jobs_last_runs(client: Client) -> None:
    TaskStatus.objects.record("runner-sync", ok=True, duration=1.5)
    TaskStatus.objects.record("runner-sync", ok=False, duration=0.25, error="boom")
    TaskStatus.objects.record("beat", ok=True, duration=0.01)
    sync = TaskStatus.objects.get(name="runner-sync")
    assert sync.last_success_at is not None and sync.last_failure_at is not None

    samples = scrape(client)

    success = "controlplane_task_last_success_timestamp_seconds"
    failure = "controlplane_task_last_failure_timestamp_seconds"
    assert samples[f'{success}{{task="runner-sync"}}'] == pytest.approx(
        sync.last_success_at.timestamp()
    )
    assert samples[f'{failure}{{task="runner-sync"}}'] == pytest.approx(
        sync.last_failure_at.timestamp()
    )
    assert samples['controlplane_task_last_duration_seconds{task="runner-sync"}'] == (
        0.25
    )
    assert f'{success}{{task="beat"}}' in samples
    assert f'{failure}{{task="beat"}}' not in samples


@pytest.mark.django_db
@pytest.mark.parametrize("jobs", [1, 20])
def test_each_collector_makes_one_query_whatever_the_row_count(
    jobs: int, django_assert_num_queries
) -> None:
    GitHubUsage.objects.record(counter="requests_total")
    for n in range(jobs):
        TaskStatus.objects.record(f"job-{n}", ok=True, duration=1.0)
        GitHubUsage.objects.record(counter="requests_total", purpose=f"purpose-{n}")
    for collector in (
        metrics.GitHubUsageCollector(),
        metrics.GitHubPurposeCollector(),
        metrics.TaskStatusCollector(),
    ):
        with django_assert_num_queries(1):
            list(collector.collect())


class BrokenCollector:
    name = "broken"

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("controlplane_half_done", "never shown", value=1)
        raise RuntimeError("query failed")


class RunnerCountCollector:
    name = "runners-test"

    def collect(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("controlplane_test_runners", "runners", value=3)]


@pytest.mark.django_db
def test_registered_collectors_are_scraped_and_a_failing_one_costs_only_itself(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "_collectors", dict(metrics._collectors))
    metrics.register(BrokenCollector())
    metrics.register(RunnerCountCollector())

    samples = scrape(client)

    assert samples["controlplane_test_runners"] == 3
    assert "controlplane_half_done" not in samples
    assert samples['controlplane_metrics_collector_up{collector="broken"}'] == 0
    assert samples['controlplane_metrics_collector_up{collector="runners-test"}'] == 1
    assert samples["controlplane_github_requests_total"] == 0


@pytest.mark.django_db
def test_metrics_never_show_secrets(client: Client) -> None:
    GitHubUsage.objects.record(counter="requests_total")
    body = client.get("/metrics").content.decode()
    for secret in (settings.GITHUB_TOKEN, settings.SECRET_KEY):
        assert secret not in body


@pytest.mark.django_db
def test_metrics_pass_promtool(client: Client) -> None:
    promtool = require_tool("promtool")
    GitHubUsage.objects.record(
        counter="requests_total", headers={"x-ratelimit-remaining": "10"}
    )
    TaskStatus.objects.record("beat", ok=True, duration=0.01)
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=client.get("/metrics").content,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
