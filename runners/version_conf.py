"""Runner version rules, from the environment (``controlplane.env`` helpers).

Read through the accessors below, which prefer a Django setting of the same name,
so tests and deployments can override them either way. (They live here rather than
in ``controlplane/settings.py``, which is at its size limit.)
"""

from __future__ import annotations

import os
import re

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from controlplane.env import envbool, envfloat, envint

VERSION_PATTERN = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


def _version_setting(name: str, raw: str) -> str:
    value = raw.strip()
    if value and not VERSION_PATTERN.match(value):
        raise ImproperlyConfigured(
            f"{name} must be a runner version like 2.328.0 (or empty), got {raw!r}"
        )
    return value.removeprefix("v")


# A runner below this version is outdated and passed over by deploys: set it to the
# minimum GitHub enforces (GitHub announces each enforced minimum in its changelog).
# Empty: no fixed minimum.
_MINIMUM = _version_setting(
    "RUNNER_VERSION_MINIMUM", os.getenv("RUNNER_VERSION_MINIMUM", "")
)
# Read the newest runner release from GitHub's runner downloads endpoint and flag
# runners more than RUNNER_VERSION_MAX_MINOR_BEHIND minor versions behind it.
_FOLLOW_LATEST = envbool("RUNNER_VERSION_FOLLOW_LATEST", True)
_MAX_MINOR_BEHIND = envint("RUNNER_VERSION_MAX_MINOR_BEHIND", 2)
# Hours between two reads of the downloads endpoint (4 a day by default: one API
# request each, nothing against the budget).
_FETCH_HOURS = envfloat("RUNNER_VERSION_FETCH_HOURS", 6.0, minimum=1.0, maximum=168.0)


def minimum() -> str:
    value = getattr(settings, "RUNNER_VERSION_MINIMUM", _MINIMUM)
    return _version_setting("RUNNER_VERSION_MINIMUM", str(value or ""))


def follow_latest() -> bool:
    return bool(getattr(settings, "RUNNER_VERSION_FOLLOW_LATEST", _FOLLOW_LATEST))


def max_minor_behind() -> int:
    return int(getattr(settings, "RUNNER_VERSION_MAX_MINOR_BEHIND", _MAX_MINOR_BEHIND))


def fetch_hours() -> float:
    return float(getattr(settings, "RUNNER_VERSION_FETCH_HOURS", _FETCH_HOURS))
