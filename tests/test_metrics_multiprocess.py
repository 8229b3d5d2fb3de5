"""/metrics served by several gunicorn workers: every scrape tells the same story."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, manage_shell
from tests.processes import GUNICORN

SCRAPES = 30

RECORD_USAGE = """
from controlplane.models import GitHubUsage, TaskStatus
headers = {"x-ratelimit-remaining": "4100", "x-ratelimit-limit": "5000"}
for _ in range(17):
    GitHubUsage.objects.record(counter="requests_total", headers=headers)
for _ in range(4):
    GitHubUsage.objects.record(counter="errors_total")
TaskStatus.objects.record("runner-sync", ok=True, duration=2.5)
"""

DATABASE_FIGURES = (
    "controlplane_github_requests_total",
    "controlplane_github_errors_total",
    "controlplane_github_not_modified_total",
    "controlplane_github_rate_limit_remaining",
    'controlplane_task_last_success_timestamp_seconds{task="runner-sync"}',
    'controlplane_task_last_duration_seconds{task="runner-sync"}',
)
METRICS_RESPONSES = (
    "django_http_responses_total_by_status_view_method_total"
    '{method="GET",status="200",view="metrics"}'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sample_map(families: Iterable[Metric]) -> dict[str, float]:
    """Every sample, keyed ``name{label="value",...}``."""
    found: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = (
                sample.value
            )
    return found


def samples(text: str) -> dict[str, float]:
    return sample_map(text_string_to_metric_families(text))


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body.decode()


@pytest.fixture(scope="module")
def multiproc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prometheus-multiproc")


@pytest.fixture(scope="module")
def gunicorn(
    process_env: dict[str, str],
    multiproc_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """Two sync workers (one request each at a time, so concurrent scrapes reach both),
    sharing PROMETHEUS_MULTIPROC_DIR; yields the base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    process = subprocess.Popen(
        [
            GUNICORN,
            "controlplane.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "sync",
        ],
        cwd=ROOT,
        env={**process_env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                get(f"{base}/healthz")
                break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def responses_per_worker(multiproc_dir: Path) -> dict[str, float]:
    """Each worker's own count of /metrics responses, from its counter file."""
    counts: dict[str, float] = {}
    for path in multiproc_dir.glob("counter_*.db"):
        merged = MultiProcessCollector.merge(  # type: ignore[no-untyped-call]
            [str(path)], accumulate=False
        )
        counts[path.stem] = sample_map(merged).get(METRICS_RESPONSES, 0.0)
    return counts


@pytest.mark.slow
def test_every_worker_reports_the_database_figures_and_the_summed_request_counts(
    gunicorn: str, process_env: dict[str, str], multiproc_dir: Path
) -> None:
    # Another process (like a Celery worker) does the GitHub calls.
    manage_shell(process_env, RECORD_USAGE)

    with ThreadPoolExecutor(max_workers=6) as pool:
        scrapes = list(pool.map(get, [f"{gunicorn}/metrics"] * SCRAPES))
    final = samples(get(f"{gunicorn}/metrics"))

    per_worker = responses_per_worker(multiproc_dir)
    assert len([n for n in per_worker.values() if n > 0]) == 2, per_worker
    assert sum(per_worker.values()) == SCRAPES + 1
    # The final scrape counted every earlier response, whichever worker served it.
    assert final[METRICS_RESPONSES] == SCRAPES

    expected = {name: final[name] for name in DATABASE_FIGURES}
    assert expected["controlplane_github_requests_total"] == 17
    assert expected["controlplane_github_errors_total"] == 4
    assert expected["controlplane_github_not_modified_total"] == 0
    assert expected["controlplane_github_rate_limit_remaining"] == 4100
    assert expected['controlplane_task_last_duration_seconds{task="runner-sync"}'] == (
        2.5
    )
    for text in scrapes:
        scraped = samples(text)
        assert {name: scraped[name] for name in DATABASE_FIGURES} == expected
