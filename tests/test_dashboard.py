"""The Grafana dashboards and the alert rules query only metrics the control plane
exports, and the dashboard covers what an SRE looks at (fleet, deploys, secrets,
GitHub budget)."""

from __future__ import annotations

import itertools
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from controlplane.models import GitHubUsage, TaskStatus
from deploys.metrics import DeployAlertCollector
from deploys.models import CommitDate, DeployAttempt, DeployRun, Environment
from githubsim.hosts import exporter_text
from githubsim.models import Runner as SimulatedRunner
from inventory.loading import load_text
from inventory.models import InventoryLoad
from rotations.models import SecretRotationSchedule
from runners.models import Reason, Runner, RunnerRelease, State
from tests.conftest import ROOT

DASHBOARD_WITH_HOSTS = "monitoring/grafana/dashboards/controlplane-fleet.json"
DASHBOARDS = sorted((ROOT / "monitoring/grafana/dashboards").glob("*.json"))
ALERTS = ROOT / "monitoring/prometheus/alerts.yml"
# Words of PromQL that look like metric names: functions, aggregations, keywords.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "by", "without", "on",
    "ignoring", "group_left", "group_right", "and", "or", "unless", "rate",
    "increase", "irate", "delta", "time", "vector", "scalar", "absent", "sort", "sort_desc",
    "histogram_quantile", "label_replace", "clamp_min", "clamp_max", "bool",
}  # fmt: skip
# Series Prometheus makes itself, not the app.
PROMETHEUS_SERIES = {"up"}
# The job scraping runner hosts' exporters, found through /sd/exporters
# (monitoring/prometheus/prometheus.yml).
HOST_JOB = 'job="runner-exporters"'


def node_exporter_series() -> set[str]:
    """The node_exporter metric names the simulated runner hosts serve (the names
    node_exporter itself exports)."""
    text = exporter_text(SimulatedRunner(1, "host-1", []), 3600.0)
    return {
        sample.name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def expressions() -> list[tuple[str, str]]:
    """Every PromQL expression on a dashboard or in an alert rule, and where it is."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            found.append((f"alerts.yml: {rule['alert']}", rule["expr"]))
    return found


def metric_names(expr: str) -> set[str]:
    # Drop label matchers, strings, ranges and grouping clauses, then what is left
    # that is not a PromQL word or a number is a metric name.
    expr = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]", " ", expr)
    expr = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr
    )
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {
        w
        for w in words
        if w not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]?", w)
    }


def make_every_family_report() -> None:
    """One row for each thing a family describes, so every family has samples."""
    now = timezone.now()
    GitHubUsage.objects.record(
        counter="rate_limited_total",
        headers={"x-ratelimit-remaining": "100", "x-ratelimit-limit": "5000"},
    )
    for task in (
        "beat",
        "health_sweep",
        "runner_sync",
        "deploy_reconcile",
        "runner_versions",
    ):
        TaskStatus.objects.record(task, ok=True, duration=0.1)
    stale = Runner.objects.create(
        name="prod-1",
        state=State.UNHEALTHY,
        reason=Reason.HEARTBEAT_STALE,
        last_heartbeat_at=now - timedelta(minutes=5),
        exporter_url="https://prod-1.example:9100/metrics",
        # A trust override that ran out while the runner is still unhealthy.
        trusted_until=now - timedelta(minutes=1),
        trusted_by="sam",
        trusted_reason="exporter behind the firewall",
        # Its latest canary job was not picked up.
        canary_checked_at=now,
        canary_failing=True,
    )
    spare = Runner.objects.create(
        name="prod-2",
        state=State.HEALTHY,
        # Flagged by the version rules and (listed by GitHub without its name
        # label) the name-label check when it joins the pool below.
        github_id=2,
        runner_version="2.300.0",
        version_outdated="below_minimum",
    )
    RunnerRelease.objects.create(
        scope="/repos/acme/deploy/actions/runners/downloads",
        latest_version="2.330.0",
        fetched_at=now,
    )
    env = Environment.objects.create(name="production", repository="acme/deploy")
    env.set_pool([stale, spare])
    failed = DeployRun.objects.create(
        environment=env,
        ref="main",
        state=DeployRun.State.FAILED,
        reason=DeployRun.Reason.NO_HEALTHY_RUNNER,
        created_at=now - timedelta(minutes=10),
        started_at=now - timedelta(minutes=9),
        finished_at=now - timedelta(minutes=5),
    )
    DeployAttempt.objects.create(
        run=failed,
        number=1,
        runner=stale,
        state=DeployAttempt.State.CANCELLED,
        dispatched_at=now - timedelta(minutes=9),
        picked_up_at=now - timedelta(minutes=8),
        failover_reason=DeployAttempt.FailoverReason.PICKUP_TIMEOUT,
    )
    running = DeployRun.objects.create(
        environment=env, ref="v2", state=DeployRun.State.RUNNING, started_at=now
    )
    DeployAttempt.objects.create(
        run=running,
        number=1,
        runner=spare,
        state=DeployAttempt.State.DISPATCHED,
        dispatched_at=now,
    )
    DeployRun.objects.create(environment=env, ref="v3", state=DeployRun.State.QUEUED)
    SecretRotationSchedule(
        name="DEPLOY_KEY", last_rotated_at=now - timedelta(days=100)
    ).save()
    # The intended inventory names one runner GitHub never registered.
    load_text(
        "prod-1\nprod-2\nprod-3\n",
        "list",
        source=InventoryLoad.Source.API,
        actor="test",
    )


def make_dora_report() -> None:
    """A deploy history where every deploy outcome figure has a sample: a change with
    its commit date, a failed change restored, and one failing still."""
    now = timezone.now()
    env = Environment.objects.create(name="staging", repository="acme/deploy")
    history = [
        ("a" * 40, DeployRun.State.SUCCEEDED, "", 5),
        ("b" * 40, DeployRun.State.FAILED, DeployRun.Reason.DEPLOY_FAILED, 4),
        ("a" * 40, DeployRun.State.SUCCEEDED, "", 3),
        ("c" * 40, DeployRun.State.FAILED, DeployRun.Reason.DEPLOY_FAILED, 2),
    ]
    for sha, state, reason, hours_ago in history:
        DeployRun.objects.create(
            environment=env,
            ref="main",
            sha=sha,
            state=state,
            reason=reason,
            finished_at=now - timedelta(hours=hours_ago),
        )
    CommitDate.objects.create(
        repository="acme/deploy", sha="a" * 40, committed_at=now - timedelta(hours=6)
    )


def exposed(client: Client) -> dict[str, list[dict[str, str]]]:
    text = client.get("/metrics").content.decode()
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.labels)
    return samples


def test_metric_names_are_read_out_of_promql() -> None:
    assert metric_names(
        "sum by (environment) (rate(controlplane_deploy_duration_seconds_sum[1h]))"
        ' / on() group_left controlplane_x{a="b"} > 2 * scalar(up) + 300'
    ) == {"controlplane_deploy_duration_seconds_sum", "controlplane_x", "up"}


@pytest.mark.django_db
def test_every_query_names_metrics_the_app_exports(
    client: Client, settings: Any, tmp_path: Path
) -> None:
    # An inventory file is watched (its refusal has a family of its own).
    inventory = tmp_path / "inventory.txt"
    inventory.write_text("prod-1\nprod-2\nprod-3\n")
    settings.INVENTORY_PATH = str(inventory)
    make_every_family_report()
    make_dora_report()
    names = set(exposed(client)) | PROMETHEUS_SERIES
    host_series = node_exporter_series()
    queries = expressions()
    assert len(queries) > 30
    for where, expr in queries:
        used = metric_names(expr)
        if used & host_series:
            # Runner hosts' own series, only from the job that scrapes them.
            assert HOST_JOB in expr, f"{where}: select {HOST_JOB}"
            used -= host_series
        unknown = used - names
        assert not unknown, f"{where} queries {sorted(unknown)}, which /metrics lacks"


def test_the_host_row_shows_each_runner_host_templated_by_runner() -> None:
    dashboard = json.loads((ROOT / DASHBOARD_WITH_HOSTS).read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert HOST_JOB in variables["runner"]["query"]["query"]
    assert variables["runner"]["query"]["query"].endswith(", runner)")
    titles = [panel["title"] for panel in dashboard["panels"]]
    row = titles.index("Runner hosts")
    host_panels = list(
        itertools.takewhile(
            lambda panel: panel.get("type") != "row", dashboard["panels"][row + 1 :]
        )
    )
    assert [p["title"] for p in host_panels] == [
        "Host CPU busy",
        "Host load per CPU",
        "Root filesystem free",
        "Host memory available",
        "Exporters scraped",
    ]
    used: set[str] = set()
    for panel in host_panels:
        for target in panel["targets"]:
            assert HOST_JOB in target["expr"], panel["title"]
            assert 'runner=~"$runner"' in target["expr"], panel["title"]
            used |= metric_names(target["expr"])
    assert used - PROMETHEUS_SERIES <= node_exporter_series()


@pytest.mark.django_db
def test_the_alert_series_carry_the_labels_the_rules_use(client: Client) -> None:
    make_every_family_report()
    samples = exposed(client)
    assert {"runner": "prod-1", "reason": "heartbeat_stale"} in samples[
        "controlplane_runner_reason"
    ]
    assert {"environment": "production", "reason": "no_healthy_runner"} in samples[
        "controlplane_deploy_failures_total"
    ]
    assert {"environment": "production", "reason": "pickup_timeout"} in samples[
        "controlplane_deploy_failovers_total"
    ]
    assert {"environment": "production"} in samples[
        "controlplane_deploys_awaiting_pickup"
    ]
    statuses = {s["status"] for s in samples["controlplane_secret_status"]}
    assert {"overdue", "missing"} <= statuses


@pytest.mark.django_db
def test_deploy_alert_figures_describe_the_database(
    django_assert_num_queries: Any,
) -> None:
    make_every_family_report()
    with django_assert_num_queries(2):
        failures, awaiting = DeployAlertCollector().collect()
    assert [(s.labels, s.value) for s in failures.samples] == [
        ({"environment": "production", "reason": "no_healthy_runner"}, 1)
    ]
    assert [(s.labels, s.value) for s in awaiting.samples] == [
        ({"environment": "production"}, 1)
    ]


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    titles = {
        panel["title"]
        for path in DASHBOARDS
        for panel in json.loads(path.read_text())["panels"]
    }
    for title in (
        "Fleet health over time",
        "Runners by state",
        "Heartbeat age (oldest 10)",
        "Signal coverage",
        "Deploy outcomes per hour",
        "Mean deploy duration",
        "Failovers by reason per hour",
        "Time to pickup",
        "Secrets by status",
        "Days until due",
        "GitHub API budget left",
        "Deployment frequency",
        "Lead time for changes",
        "Change failure rate",
        "Time to restore",
    ):
        assert title in titles, title


def test_panels_do_not_overlap() -> None:
    for path in DASHBOARDS:
        cells: set[tuple[int, int]] = set()
        for panel in json.loads(path.read_text())["panels"]:
            pos = panel["gridPos"]
            area = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not area & cells, (path.name, panel["title"])
            assert pos["x"] + pos["w"] <= 24
            cells |= area
