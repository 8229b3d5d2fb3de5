"""Canary settings, from the environment (``controlplane.env`` helpers).

Read through the accessors below, which prefer a Django setting of the same name.
How often each environment's pool runners get a canary is the environment's own
``canary_interval_minutes``; these say how the canary runs and what it may spend.
"""

from __future__ import annotations

import os

from django.conf import settings

from controlplane.env import envfloat, envint

# The canary workflow, in DIAGNOSTICS_REPOSITORY at DIAGNOSTICS_REF.
_WORKFLOW = os.getenv("CANARY_WORKFLOW", "runner-canary.yml")
# Seconds from dispatch until a runner must have taken the canary job; past it the
# canary fails (the runner does not take jobs) and its run is cancelled.
_PICKUP_TIMEOUT = envint("CANARY_PICKUP_TIMEOUT", 300, minimum=30)
# Seconds the job may run once taken before the canary fails.
_JOB_TIMEOUT = envint("CANARY_JOB_TIMEOUT", 300, minimum=30)
# Share of the hourly GitHub API limit the canaries of all pools may spend (one
# dispatch each while webhooks flow); past it every interval is stretched alike.
_BUDGET_SHARE = envfloat("CANARY_BUDGET_SHARE", 0.06, maximum=1.0)
# Seconds without any webhook about a canary's job before it is looked up on GitHub
# (webhooks lost or not configured): the fallback poll.
_WEBHOOK_GRACE = envint("CANARY_WEBHOOK_GRACE", 120, minimum=5)
# Canaries kept per runner (the runner page's strip, the pickup histogram).
_KEEP = envint("CANARY_KEEP", 48, minimum=2)


def workflow() -> str:
    return str(getattr(settings, "CANARY_WORKFLOW", _WORKFLOW))


def pickup_timeout() -> int:
    return int(getattr(settings, "CANARY_PICKUP_TIMEOUT", _PICKUP_TIMEOUT))


def job_timeout() -> int:
    return int(getattr(settings, "CANARY_JOB_TIMEOUT", _JOB_TIMEOUT))


def budget_share() -> float:
    return float(getattr(settings, "CANARY_BUDGET_SHARE", _BUDGET_SHARE))


def webhook_grace() -> int:
    return int(getattr(settings, "CANARY_WEBHOOK_GRACE", _WEBHOOK_GRACE))


def keep() -> int:
    return int(getattr(settings, "CANARY_KEEP", _KEEP))
