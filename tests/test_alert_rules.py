"""The shipped alert rules: promtool accepts them and every alert is unit tested,
both firing and not firing (monitoring/prometheus/tests/alerts_test.yml)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import yaml

from controlplane.liveness import watched_jobs
from controlplane.tasks import BEAT_TASK_STATUS
from tests.conftest import ROOT, require_tool

PROMETHEUS = ROOT / "monitoring/prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "tests/alerts_test.yml"


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        cwd=PROMETHEUS,
        env={**os.environ, "SITE_URL": "https://cp.example.com"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_promtool_check_rules_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names <= firing, f"never tested firing: {sorted(names - firing)}"
    # The watchdog is the one alert that must never be quiet.
    assert names - {"Watchdog"} <= quiet, f"never tested quiet: {names - quiet}"
    assert (firing | quiet) <= names, "tests for alerts that do not exist"


def test_every_alert_has_a_deliberate_for_severity_and_annotations() -> None:
    for rule in alerts():
        assert "for" in rule, f"{rule['alert']}: say how long it must hold"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}
        assert annotations["runbook_url"].startswith(
            "{{ $externalLabels.controlplane_url }}/runbooks/"
        ), rule["alert"]


def test_the_watchdog_always_fires_and_self_monitoring_covers_each_job() -> None:
    by_name = {rule["alert"]: rule for rule in alerts()}
    assert by_name["Watchdog"]["expr"].strip() == "vector(1)"
    stale = by_name["ControlPlaneTaskStale"]["expr"]
    for task in (
        "health_sweep",
        "exporter_probe",
        "runner_sync",
        "deploy_reconcile",
        "secrets_audit",
        "diagnostics_watch",
        "canary_schedule",
        "inventory_file",
    ):
        assert task in stale, task
    # What the UI banner watches, the alert pages on (the beat tick has its own).
    for job in watched_jobs():
        if job.name != BEAT_TASK_STATUS:
            assert job.name in stale, job.name
    assert 'task="beat"' in by_name["CeleryBeatTickStale"]["expr"]


def test_alertmanager_config_is_valid_and_routes_the_watchdog() -> None:
    amtool = require_tool("amtool")
    config = ROOT / "monitoring/alertmanager/alertmanager.yml"
    result = subprocess.run(
        [amtool, "check-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    routed = subprocess.run(
        [amtool, "config", "routes", "test", "--config.file", str(config)]
        + ["alertname=Watchdog", "severity=info"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert routed.stdout.split() == ["deadmansswitch"], routed.stdout + routed.stderr
    critical = subprocess.run(
        [amtool, "config", "routes", "test", "--config.file", str(config)]
        + ["alertname=DeployNoHealthyRunner", "severity=critical"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert critical.stdout.split() == ["sre-pager"], critical.stdout + critical.stderr
