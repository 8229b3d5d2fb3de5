"""Reading settings from environment variables: each helper raises
``ImproperlyConfigured`` naming the variable when its value is bad."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    raw = os.getenv(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no, on/off")


def envint(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.getenv(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def envfloat(
    name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
) -> float:
    raw = os.getenv(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}")
    return value


def envlist(name: str, default: str) -> list[str]:
    return [
        item.strip() for item in os.getenv(name, default).split(",") if item.strip()
    ]


def envsecret(name: str, default: str = "") -> str:
    """Read NAME, or the contents of the file named by NAME_FILE (Docker secrets)."""
    path = os.getenv(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{name}_FILE points to {path!r}, which cannot be read: {exc.strerror}"
            ) from None
    return os.getenv(name, default)


def envurl(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    value = os.getenv(name, default).strip()
    parts = urlsplit(value)
    if parts.scheme not in schemes or (
        parts.scheme.startswith("http") and not parts.netloc
    ):
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
            f", got {value!r}"
        )
    return value.rstrip("/")


def envurllist(name: str) -> list[str]:
    """NAME (or NAME_FILE): http(s) URLs separated by commas, read like a secret
    (a webhook URL's path is often its token)."""
    urls = [u.strip() for u in envsecret(name).split(",") if u.strip()]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ImproperlyConfigured(
                f"{name} must hold http:// or https:// URLs separated by commas"
            )
    return urls


def envdatabase(name: str, url: str) -> dict[str, Any]:
    """Django's database settings for ``url`` (the value of ``name``)."""
    try:
        database: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=600))
    except Exception as exc:  # dj-database-url raises several types
        raise ImproperlyConfigured(
            f"{name} is not a usable database URL: {exc}"
        ) from None
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # Web, worker and beat share the file: WAL lets readers run beside the
        # writer, IMMEDIATE transactions take the write lock up front instead of
        # failing with "database is locked" on upgrade, and busy_timeout waits.
        database["CONN_MAX_AGE"] = 0
        database["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    else:
        database["CONN_HEALTH_CHECKS"] = True
    return database


def envlogging(name: str) -> tuple[str, dict[str, Any]]:
    """The log level in ``name`` and the ``LOGGING`` setting for it: one console
    handler whose lines carry the request id."""
    level = os.getenv(name, "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ImproperlyConfigured(
            f"{name} must be DEBUG, INFO, WARNING or ERROR, got {level!r}"
        )
    logging: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "controlplane.request_id.RequestIdFilter"}},
        "formatters": {
            "plain": {
                "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
            }
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # PyGithub logs request headers (the token) at DEBUG.
            "github": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
            # The jira library dumps response headers and bodies at DEBUG.
            "jira": {"level": "WARNING"},
        },
    }
    return level, logging
