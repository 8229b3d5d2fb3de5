"""Diagnostics settings, from the environment (``controlplane.env`` helpers).

Read through the accessors below, which prefer a Django setting of the same name,
so tests and deployments can override them either way. (They live here rather than
in ``controlplane/settings.py``, which is at its size limit.)
"""

from __future__ import annotations

import os

from django.conf import settings

from controlplane.env import envint

# The workflows the control plane dispatches on a runner, in DIAGNOSTICS_REPOSITORY
# (default: GITHUB_REPOSITORY) at DIAGNOSTICS_REF.
_WORKFLOW = os.getenv("DIAGNOSTICS_WORKFLOW", "runner-diagnostics.yml")
_AGENT_WORKFLOW = os.getenv("AGENT_INSTALL_WORKFLOW", "runner-agent.yml")
_REPOSITORY = os.getenv("DIAGNOSTICS_REPOSITORY", "")
_REF = os.getenv("DIAGNOSTICS_REF", "main")
# Seconds from dispatch to a report (or, for an agent install, the run's end)
# before the run counts as timed out and is cancelled.
_DEADLINE = envint("DIAGNOSTICS_DEADLINE", 600, minimum=30)
# Seconds between looks at a dispatched run (one GitHub call per run in flight).
_POLL_INTERVAL = envint("DIAGNOSTICS_POLL_INTERVAL", 15, minimum=1)
# Dispatch only while GitHub reports at least this many API calls left this hour:
# diagnostics wait, deploys do not.
_MIN_BUDGET = envint("DIAGNOSTICS_MIN_BUDGET", 500)
# Reports kept per runner (older ones are deleted when a new one arrives).
_KEEP = envint("DIAGNOSTICS_KEEP", 50, minimum=2)


def workflow() -> str:
    return str(getattr(settings, "DIAGNOSTICS_WORKFLOW", _WORKFLOW))


def agent_workflow() -> str:
    return str(getattr(settings, "AGENT_INSTALL_WORKFLOW", _AGENT_WORKFLOW))


def repository() -> str:
    value = getattr(settings, "DIAGNOSTICS_REPOSITORY", _REPOSITORY)
    return str(value or settings.GITHUB_REPOSITORY)


def ref() -> str:
    return str(getattr(settings, "DIAGNOSTICS_REF", _REF))


def deadline() -> int:
    return int(getattr(settings, "DIAGNOSTICS_DEADLINE", _DEADLINE))


def poll_interval() -> int:
    return int(getattr(settings, "DIAGNOSTICS_POLL_INTERVAL", _POLL_INTERVAL))


def min_budget() -> int:
    return int(getattr(settings, "DIAGNOSTICS_MIN_BUDGET", _MIN_BUDGET))


def keep() -> int:
    return int(getattr(settings, "DIAGNOSTICS_KEEP", _KEEP))
