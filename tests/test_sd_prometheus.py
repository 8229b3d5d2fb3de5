"""The shipped Prometheus configuration discovers the runner exporters through
``/sd/exporters``: Compose hands Prometheus and the web service the same token, and a
real Prometheus, given the shipped job, finds and scrapes simulated runner hosts."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from githubsim import Simulator
from tests.conftest import ROOT, require_tool
from tests.factories import make_env, make_runner

DASHBOARD = ROOT / "monitoring/grafana/dashboards/controlplane-fleet.json"
PROMETHEUS_YML = ROOT / "monitoring/prometheus/prometheus.yml"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
TOKEN = "sd-token-for-the-real-prometheus"  # noqa: S105


def shipped_job() -> dict[str, Any]:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = [j for j in config["scrape_configs"] if j["job_name"] == "runner-exporters"]
    assert len(jobs) == 1
    job: dict[str, Any] = jobs[0]
    return job


def test_prometheus_and_the_web_service_share_the_compose_token_secret() -> None:
    (sd,) = shipped_job()["http_sd_configs"]
    assert sd["url"] == "http://web:8000/sd/exporters"
    assert sd["authorization"].get("type", "Bearer") == "Bearer"
    secret_file = sd["authorization"]["credentials_file"]
    assert secret_file == "/run/secrets/sd_token"
    services = COMPOSE["services"]
    assert "sd_token" in services["prometheus"]["secrets"]
    assert "sd_token" in services["web"]["secrets"]
    assert services["web"]["environment"]["SD_BEARER_TOKEN_FILE"] == secret_file
    assert COMPOSE["secrets"]["sd_token"] == {"environment": "SD_BEARER_TOKEN"}


def test_production_settings_serve_discovery_over_plain_http_inside_the_network(
    tmp_path: Path,
) -> None:
    """Prometheus reaches web:8000 over HTTP: no redirect to HTTPS, like /metrics."""
    code = (
        "import re, django; django.setup(); from django.conf import settings as s;"
        "print(any(re.search(p, 'sd/exporters') for p in s.SECURE_REDIRECT_EXEMPT),"
        " s.SECURE_SSL_REDIRECT)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            "VAR_DIR": str(tmp_path),
            "DEBUG": "0",
            "SECRET_KEY": "s" * 50,
            "GITHUB_WEBHOOK_SECRET": "whsec",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


@pytest.fixture
def prometheus(live_server: Any, settings: Any, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus running the shipped job against the live server, its
    URL."""
    binary = require_tool("prometheus")
    settings.SD_BEARER_TOKEN = TOKEN
    settings.SD_BEARER_TOKEN_FILE = ""
    token_file = tmp_path / "sd_token"
    token_file.write_text(TOKEN + "\n")
    job = shipped_job()
    (sd,) = job["http_sd_configs"]
    sd["url"] = f"{live_server.url}/sd/exporters"
    sd["refresh_interval"] = "1s"
    sd["authorization"]["credentials_file"] = str(token_file)
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def wait_for_targets(url: str, count: int, timeout: float = 60) -> list[Any]:
    deadline = time.monotonic() + timeout
    targets: list[Any] = []
    while time.monotonic() < deadline:
        try:
            targets = get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
        except OSError:
            targets = []  # still starting
        if len(targets) == count and all(t["health"] == "up" for t in targets):
            return targets
        time.sleep(0.5)
    pytest.fail(f"Prometheus did not scrape {count} targets: {targets}")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.sim(time_scale=1)
def test_a_real_prometheus_discovers_and_scrapes_the_runner_exporters(
    sim: Simulator, prometheus: str
) -> None:
    for name in ("prod-1", "prod-2"):
        sim.add_runner(name, ["self-hosted", name])
    primary = make_runner(
        "prod-1", exporter_url=f"{sim.url}/_sim/exporter/prod-1/metrics"
    )
    secondary = make_runner(
        "prod-2",
        exporter_url=f"{sim.url}/_sim/exporter/prod-2/metrics",
        state="healthy",
    )
    make_runner("no-exporter")
    make_env("production", primary, secondary)

    targets = wait_for_targets(prometheus, 2)

    labels = sorted((t["labels"] for t in targets), key=lambda x: x["runner"])
    assert labels == [
        {
            "job": "runner-exporters",
            "instance": "prod-1",
            "runner": "prod-1",
            "runner_state": "unknown",
            "environment": "production",
            "pool_position": "0",
            "environments": ",production,",
        },
        {
            "job": "runner-exporters",
            "instance": "prod-2",
            "runner": "prod-2",
            "runner_state": "healthy",
            "environment": "production",
            "pool_position": "1",
            "environments": ",production,",
        },
    ]
    assert {t["scrapeUrl"] for t in targets} == {
        f"{sim.url}/_sim/exporter/prod-1/metrics",
        f"{sim.url}/_sim/exporter/prod-2/metrics",
    }
    # Every query of the dashboard's host row answers for each runner (rates need
    # a few scrapes first).
    for title, expr in host_row_queries():
        deadline = time.monotonic() + 30
        while set(series := series_by_runner(prometheus, expr)) != {"prod-1", "prod-2"}:
            assert time.monotonic() < deadline, (title, expr, series)
            time.sleep(0.5)
        assert all(0 <= value <= 1 for value in series.values()), (title, series)


def host_row_queries() -> list[tuple[str, str]]:
    """The dashboard's Runner hosts queries, with every runner and environment
    selected (what Grafana sends for "All")."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    titles = [panel["title"] for panel in panels]
    return [
        (
            panel["title"],
            target["expr"].replace("$environment", ".*").replace("$runner", ".*"),
        )
        for panel in itertools.takewhile(
            lambda panel: panel.get("type") != "row",
            panels[titles.index("Runner hosts") + 1 :],
        )
        for target in panel["targets"]
    ]


def series_by_runner(url: str, expr: str) -> dict[str, float]:
    query = urllib.parse.urlencode({"query": expr})
    result = get_json(f"{url}/api/v1/query?{query}")["data"]["result"]
    return {item["metric"]["runner"]: float(item["value"][1]) for item in result}
