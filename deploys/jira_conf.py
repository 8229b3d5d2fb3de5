"""JIRA change-ticket settings, from the environment (``controlplane.env`` helpers).

Read through the accessors below, which prefer a Django setting of the same name,
so tests and deployments can override them either way. (They live here rather than
in ``controlplane/settings.py``, which is at its size limit.)

Without ``JIRA_URL`` the control plane never talks to JIRA: a change ticket is only
checked against its environment's pattern.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from controlplane.env import envfloat, envint, envlist, envsecret


def _clean_url(name: str, value: str) -> str:
    """``value`` as a JIRA base URL ("" when unset); credentials in it are refused:
    the URL is shown on deploy pages and in comments' links."""
    value = value.strip().rstrip("/")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with http:// or https://"
        )
    if parts.username or parts.password:
        raise ImproperlyConfigured(
            f"{name} must not carry credentials: set JIRA_USER and JIRA_TOKEN"
        )
    if parts.query or parts.fragment:
        raise ImproperlyConfigured(f"{name} must not have a query or a fragment")
    return value


# The JIRA site, e.g. https://acme.atlassian.net ("" turns JIRA off).
_URL = _clean_url("JIRA_URL", os.getenv("JIRA_URL", ""))
# JIRA Cloud: the account's e-mail and an API token (basic auth). JIRA Data Center:
# a personal access token alone (bearer). JIRA_TOKEN_FILE works too.
_USER = os.getenv("JIRA_USER", "")
_TOKEN = envsecret("JIRA_TOKEN")
# Seconds to wait for JIRA to connect, and again for its answer: a deploy request
# waits on its ticket check, inside a web worker's 30 s.
_TIMEOUT = envfloat("JIRA_TIMEOUT", 5.0, minimum=0.1, maximum=10.0)
# Statuses a ticket may be in for a deploy to go ahead (case-insensitive), unless
# the environment lists its own.
_ALLOWED_STATUSES = envlist("JIRA_ALLOWED_STATUSES", "Approved,In Progress")
# Transitions applied (by name) after the outcome comment; blank: none.
_TRANSITION_ON_SUCCESS = os.getenv("JIRA_TRANSITION_ON_SUCCESS", "").strip()
_TRANSITION_ON_FAILURE = os.getenv("JIRA_TRANSITION_ON_FAILURE", "").strip()
# The outcome comment's outbox: attempts before giving up, and the backoff.
_MAX_ATTEMPTS = envint("JIRA_MAX_ATTEMPTS", 10, minimum=1)
_RETRY_BASE = envfloat("JIRA_RETRY_BASE", 30.0, minimum=0.0)
_RETRY_MAX = envfloat("JIRA_RETRY_MAX", 3600.0, minimum=1.0)


def url() -> str:
    return _clean_url("JIRA_URL", str(getattr(settings, "JIRA_URL", _URL) or ""))


def enabled() -> bool:
    return bool(url())


def user() -> str:
    return str(getattr(settings, "JIRA_USER", _USER) or "")


def token() -> str:
    return str(getattr(settings, "JIRA_TOKEN", _TOKEN) or "")


def timeout() -> float:
    return float(getattr(settings, "JIRA_TIMEOUT", _TIMEOUT))


def allowed_statuses() -> list[str]:
    return list(getattr(settings, "JIRA_ALLOWED_STATUSES", _ALLOWED_STATUSES))


def transition_on_success() -> str:
    return str(getattr(settings, "JIRA_TRANSITION_ON_SUCCESS", _TRANSITION_ON_SUCCESS))


def transition_on_failure() -> str:
    return str(getattr(settings, "JIRA_TRANSITION_ON_FAILURE", _TRANSITION_ON_FAILURE))


def max_attempts() -> int:
    return int(getattr(settings, "JIRA_MAX_ATTEMPTS", _MAX_ATTEMPTS))


def retry_base() -> float:
    return float(getattr(settings, "JIRA_RETRY_BASE", _RETRY_BASE))


def retry_max() -> float:
    return float(getattr(settings, "JIRA_RETRY_MAX", _RETRY_MAX))
