"""docker-compose.yml, the Dockerfile and the monitoring bundle hold together.

Docker itself does not run here, so these tests check what `docker compose up` relies
on: every command names code or files that exist, the settings load with exactly the
environment Compose gives them, dependencies and volumes are declared, every
long-running service has a healthcheck, and Prometheus, Alertmanager and Grafana
accept their configuration.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import get_commands

from tests.conftest import ROOT, require_tool

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = [name for name, svc in SERVICES.items() if "build" in svc]
MONITORING = ROOT / "monitoring"
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
# What an operator exports before `docker compose up` (README): the required ones.
OPERATOR_ENV = {
    "SECRET_KEY": "s" * 50,
    "POSTGRES_PASSWORD": "pg-password",
    "GITHUB_TOKEN": "ghp_example",
    "GITHUB_REPOSITORY": "acme/deploy",
    "GITHUB_WEBHOOK_SECRET": "whsec",
    "GRAFANA_ADMIN_PASSWORD": "grafana",
}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` expansion."""

    def expand(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        present = env.get(name, "")
        if operator in (":?", "?"):
            if not present:
                raise LookupError(f"{name}: {argument}")
            return present
        if operator in (":-", "-"):
            return present or argument
        return present

    return INTERPOLATION.sub(expand, value.replace("$$", "\0")).replace("\0", "$")


def service_env(name: str, env: dict[str, str]) -> dict[str, str]:
    return {
        key: interpolate(str(value), env)
        for key, value in SERVICES[name].get("environment", {}).items()
    }


def command(name: str) -> list[str]:
    cmd = SERVICES[name].get("command")
    if cmd is None:
        # The image's default command, from the Dockerfile.
        line = next(
            line
            for line in (ROOT / "Dockerfile").read_text().splitlines()
            if line.startswith("CMD ")
        )
        return list(json.loads(line.removeprefix("CMD ")))
    assert isinstance(cmd, list), f"{name}: use the exec form (a list)"
    return [str(part) for part in cmd]


def module_exists(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def bind_mounts(name: str) -> list[tuple[Path, str]]:
    mounts = []
    for volume in SERVICES[name].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append(((ROOT / source).resolve(), target))
    return mounts


def named_volumes(name: str) -> list[str]:
    return [
        volume.split(":")[0]
        for volume in SERVICES[name].get("volumes", [])
        if not volume.startswith((".", "/"))
    ]


def test_every_required_variable_stops_compose_with_a_message() -> None:
    for name in OPERATOR_ENV:
        if name == "GITHUB_TOKEN":
            continue  # GitHub App variables may replace it; settings then say so.
        env = {k: v for k, v in OPERATOR_ENV.items() if k != name}
        with pytest.raises(LookupError, match=f"{name}: set {name}"):
            for service in SERVICES:
                service_env(service, env)


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_service_commands_name_code_in_the_repository(service: str) -> None:
    cmd = command(service)
    program = cmd[0]
    if program == "gunicorn":
        assert module_exists(cmd[1]), cmd[1]
        assert any(part.endswith(":8000") for part in cmd), "web listens on 8000"
    elif program == "celery":
        app = cmd[cmd.index("-A") + 1]
        assert module_exists(f"{app}.celery"), app
        subcommand = cmd[cmd.index("-A") + 2]
        assert subcommand in {"worker", "beat"}
        if subcommand == "worker":
            queues = set(cmd[cmd.index("-Q") + 1].split(","))
            assert queues == {"deploys", "health"}
    elif program == "python":
        assert (ROOT / cmd[1]).is_file()
        assert cmd[2] in get_commands(), f"no management command {cmd[2]}"
    else:
        pytest.fail(f"{service}: unexpected program {program}")


def test_the_image_serves_the_web_app_and_compose_runs_each_role() -> None:
    programs = {name: " ".join(command(name)[:4]) for name in APP_SERVICES}
    assert programs["web"].startswith("gunicorn controlplane.wsgi")
    assert programs["worker"].startswith("celery -A controlplane worker")
    assert programs["beat"].startswith("celery -A controlplane beat")
    assert programs["migrate"] == "python manage.py migrate --noinput"
    # No single beat: a standby takes over when the leader dies.
    assert SERVICES["beat"]["deploy"]["replicas"] >= 2
    # The settings choose the scheduler that elects a leader; overriding it here
    # would make both beats send every task.
    assert not any(
        arg == "-S" or arg.startswith("--scheduler") for arg in command("beat")
    )
    assert command("web")[:2] == ["gunicorn", "controlplane.wsgi"]
    assert "PROMETHEUS_MULTIPROC_DIR" in SERVICES["web"]["environment"]
    multiproc = SERVICES["web"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert multiproc in SERVICES["web"]["tmpfs"], "must start empty on every start"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_settings_load_in_production_mode_with_the_compose_environment(
    service: str, tmp_path: Path
) -> None:
    env = service_env(service, OPERATOR_ENV)
    assert env["DEBUG"] == "0"
    # The same database and broker for every role, on the Compose services.
    assert env["DATABASE_URL"].startswith("postgres://controlplane:pg-password@")
    assert env["DATABASE_URL"].split("@")[1].split(":")[0] in SERVICES
    assert env["CELERY_BROKER_URL"].split("//")[1].split(":")[0] in SERVICES
    # Prometheus scrapes the web service by its Compose name.
    assert "web" in env["ALLOWED_HOSTS"].split(",")
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            "VAR_DIR": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "False",
        "django.db.backends.postgresql",
        "redis://redis:6379/0",
    ]


def test_dockerfile_builds_from_python_311_slim_with_the_pinned_requirements() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert froms == ["python:3.11-slim"]
    assert "pip install -r requirements.txt" in dockerfile
    assert "collectstatic" in dockerfile
    assert re.search(r"^USER (?!root)", dockerfile, re.MULTILINE), "runs unprivileged"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", "var", ".env"):
        assert path in ignored


def test_static_files_collect_with_production_settings(tmp_path: Path) -> None:
    """The Dockerfile's collectstatic step, with the values it sets."""
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "DEBUG": "0",
            "SECRET_KEY": "collectstatic-only",
            "GITHUB_WEBHOOK_SECRET": "collectstatic-only",
            "VAR_DIR": str(tmp_path / "var"),
            "STATIC_ROOT": str(tmp_path / "static"),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "staticfiles.json").is_file()


def test_dependencies_exist_and_their_conditions_can_be_met() -> None:
    for name, service in SERVICES.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], (name, dependency)
            else:
                assert condition == "service_completed_successfully"
                assert SERVICES[dependency].get("restart") == "no", dependency


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        if service.get("restart") == "no":
            continue  # one-shot (migrate): its exit code is its health
        check = service.get("healthcheck")
        assert check and check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert service.get("restart") == "unless-stopped", name


def test_web_healthcheck_and_scrape_target_use_real_urls() -> None:
    check = " ".join(SERVICES["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/healthz" in check
    prometheus = yaml.safe_load((MONITORING / "prometheus/prometheus.yml").read_text())
    job = next(
        j for j in prometheus["scrape_configs"] if j["job_name"] == "controlplane"
    )
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["web:8000"]


def test_volumes_are_declared_and_bind_mounts_exist() -> None:
    declared = set(COMPOSE["volumes"])
    used = set()
    for name in SERVICES:
        for volume in named_volumes(name):
            assert volume in declared, f"{name} uses undeclared volume {volume}"
            used.add(volume)
        for source, _target in bind_mounts(name):
            assert source.exists(), f"{name} mounts missing {source}"
            assert source.is_relative_to(ROOT)
    assert used == declared, "every declared volume is used"


def test_mounted_config_files_are_the_ones_the_commands_name() -> None:
    for name in ("prometheus", "alertmanager"):
        flag = next(a for a in SERVICES[name]["command"] if a.startswith("--config"))
        config_in_container = flag.split("=", 1)[1]
        hosts = [
            source / Path(config_in_container).relative_to(target)
            for source, target in bind_mounts(name)
            if config_in_container.startswith(target + "/")
        ]
        assert hosts and hosts[0].is_file(), (name, config_in_container)


def test_prometheus_config_and_rules_are_valid() -> None:
    promtool = require_tool("promtool")
    folder = MONITORING / "prometheus"
    for args in (
        ["check", "config", "prometheus.yml"],
        ["test", "rules", *sorted(str(p) for p in folder.glob("tests/*.yml"))],
    ):
        result = subprocess.run(
            [promtool, *args],
            cwd=folder,
            env={**os.environ, "SITE_URL": "https://cp.example.com"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_every_alert_rule_has_severity_summary_description_and_runbook() -> None:
    for path in [MONITORING / "prometheus/alerts.yml"]:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}
                annotations = rule["annotations"]
                assert annotations["summary"] and annotations["description"]
                assert "/runbooks/" in annotations["runbook_url"], rule["alert"]


def test_alertmanager_config_is_valid() -> None:
    amtool = require_tool("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(MONITORING / "alertmanager/alertmanager.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_prometheus_and_the_mounted_dashboards() -> None:
    provisioning = MONITORING / "grafana/provisioning"
    datasource = yaml.safe_load(
        (provisioning / "datasources/prometheus.yml").read_text()
    )
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(
        (provisioning / "dashboards/controlplane.yml").read_text()
    )
    path_in_container = provider["providers"][0]["options"]["path"]
    mounted = dict((target, source) for source, target in bind_mounts("grafana"))
    dashboards = mounted[path_in_container]
    files = list(dashboards.glob("*.json"))
    assert files
    for file in files:
        dashboard = json.loads(file.read_text())
        assert dashboard["uid"] and dashboard["panels"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == source["uid"], panel["title"]


# Every query on the dashboards and in the alert rules naming exported metrics:
# tests/test_dashboard.py, with a database where every family has samples.


@pytest.mark.parametrize("service", APP_SERVICES)
def test_notification_urls_reach_every_app_service(service: str) -> None:
    # The worker delivers the outbox, the web and beat enqueue: all need them.
    env = service_env(
        service,
        {
            **OPERATOR_ENV,
            "NOTIFY_WEBHOOK_URLS": "https://hooks.example.com/a",
            "NOTIFY_SLACK_WEBHOOK_URLS": "https://hooks.slack.com/services/T/B/x",
        },
    )
    assert env["NOTIFY_WEBHOOK_URLS"] == "https://hooks.example.com/a"
    assert env["NOTIFY_SLACK_WEBHOOK_URLS"].startswith("https://hooks.slack.com/")
