"""Configuration from the environment: a production-like environment passes Django's
deployment checks with no warnings, and each bad value stops start-up with a
message naming the variable (and never echoing a secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "k" * 10 + "Zq8vX2pL0wN5tR7yB3mC9dF4gH6jK1sA-_=+!@#%^&*()[]{}"
GITHUB_TOKEN = "ghp_productionTokenValue0123456789abcdef"  # noqa: S105
WEBHOOK_SECRET = "webhook-secret-value-9f8e7d"  # noqa: S105


def production_env(tmp_path: Path, **changes: str | None) -> dict[str, str]:
    """A production-like environment built from scratch (nothing inherited but
    PATH), with ``changes`` applied; a change to ``None`` removes the variable."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "VAR_DIR": str(tmp_path / "var"),
        "DEBUG": "0",
        "SECRET_KEY": SECRET_KEY,
        "ALLOWED_HOSTS": "controlplane.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://controlplane.example.com",
        "SITE_URL": "https://controlplane.example.com",
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "GITHUB_API_URL": "https://api.github.com",
        "GITHUB_REPOSITORY": "acme/deploy",
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        # Production serves HTTPS only and is submitted to the HSTS preload list.
        "SECURE_HSTS_PRELOAD": "1",
    }
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_environment_passes_the_deploy_checks(tmp_path: Path) -> None:
    result = manage(
        production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_debug_environment_fails_the_deploy_checks(tmp_path: Path) -> None:
    # The checks must be able to fail: the embedded defaults are not production.
    result = manage(
        production_env(tmp_path, DEBUG="1"),
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
    )

    assert result.returncode != 0
    assert "DEBUG" in result.stdout + result.stderr


BAD_ENVIRONMENTS: dict[str, tuple[dict[str, str | None], str]] = {
    "debug-not-a-boolean": ({"DEBUG": "maybe"}, "DEBUG must be one of"),
    "database-url-unknown-scheme": (
        {"DATABASE_URL": "nope://admin:hunter2-db-password@db/cp"},
        "DATABASE_URL",
    ),
    "secret-key-missing-in-production": (
        {"SECRET_KEY": None},
        "SECRET_KEY must be set",
    ),
    "secret-key-file-unreadable": (
        {"SECRET_KEY": None, "SECRET_KEY_FILE": "/nonexistent/secret"},
        "SECRET_KEY_FILE",
    ),
    "github-api-url-not-http": ({"GITHUB_API_URL": "ftp://x"}, "GITHUB_API_URL"),
    "github-api-url-without-host": ({"GITHUB_API_URL": "https://"}, "GITHUB_API_URL"),
    "github-repository-without-owner": (
        {"GITHUB_REPOSITORY": "noslash"},
        "GITHUB_REPOSITORY",
    ),
    "github-token-missing-for-real-github": ({"GITHUB_TOKEN": None}, "GITHUB_TOKEN"),
    "github-app-half-configured": (
        {"GITHUB_TOKEN": None, "GITHUB_APP_ID": "12345"},
        "GITHUB_APP_INSTALLATION_ID",
    ),
    "github-app-id-not-a-number": (
        {
            "GITHUB_APP_ID": "my-app",
            "GITHUB_APP_INSTALLATION_ID": "678",
            "GITHUB_APP_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\nx\n",
        },
        "GITHUB_APP_ID must be a number",
    ),
    "github-app-key-not-pem": (
        {
            "GITHUB_APP_ID": "12345",
            "GITHUB_APP_INSTALLATION_ID": "678",
            "GITHUB_APP_PRIVATE_KEY": "not-a-key-but-a-secret-value",
        },
        "GITHUB_APP_PRIVATE_KEY",
    ),
    "webhook-secret-missing-in-production": (
        {"GITHUB_WEBHOOK_SECRET": None},
        "GITHUB_WEBHOOK_SECRET",
    ),
    "session-idle-timeout-too-short": (
        {"SESSION_IDLE_TIMEOUT": "10"},
        "SESSION_IDLE_TIMEOUT must be at least 60",
    ),
    "token-ttl-not-a-number": (
        {"API_TOKEN_TTL_DAYS": "ninety"},
        "API_TOKEN_TTL_DAYS must be an integer",
    ),
    "github-timeout-not-a-number": (
        {"GITHUB_TIMEOUT": "fast"},
        "GITHUB_TIMEOUT must be a number",
    ),
    "broker-url-unknown-scheme": (
        {"CELERY_BROKER_URL": "http://broker"},
        "CELERY_BROKER_URL",
    ),
    "log-level-unknown": ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
}

SECRET_VALUES = (
    SECRET_KEY,
    GITHUB_TOKEN,
    WEBHOOK_SECRET,
    "hunter2-db-password",
    "not-a-key-but-a-secret-value",
)


@pytest.mark.parametrize("case", sorted(BAD_ENVIRONMENTS))
def test_bad_environment_stops_start_up_naming_the_variable(
    case: str, tmp_path: Path
) -> None:
    changes, message = BAD_ENVIRONMENTS[case]

    result = manage(production_env(tmp_path, **changes), "check")

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ImproperlyConfigured" in output
    assert message in output, output[-2000:]
    for secret in SECRET_VALUES:
        assert secret not in output
