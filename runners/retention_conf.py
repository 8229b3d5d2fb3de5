"""Settings of stale-runner retention, from the environment (``controlplane.env``
helpers), read through accessors preferring a Django setting of the same name."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from controlplane.env import envint

# GitHub removes a self-hosted runner that has been offline for 14 days (1 day for
# an ephemeral one). The control plane proposes removing a runner offline for
# RUNNER_STALE_AFTER_DAYS (default 12): two days before GitHub would, which covers
# the sync's lag in noticing the runner went offline and leaves an SRE a working
# day to bring it back or take it out of its pools first.
GITHUB_OFFLINE_REMOVAL = timedelta(days=14)
_STALE_AFTER_DAYS = envint("RUNNER_STALE_AFTER_DAYS", 12, minimum=1)
if _STALE_AFTER_DAYS >= GITHUB_OFFLINE_REMOVAL.days:
    raise ImproperlyConfigured(
        "RUNNER_STALE_AFTER_DAYS must be below 14 (GitHub removes runners offline "
        f"for 14 days), got {_STALE_AFTER_DAYS}"
    )


def stale_after() -> timedelta:
    """How long GitHub must report a runner offline before it is proposed for
    removal."""
    days = int(getattr(settings, "RUNNER_STALE_AFTER_DAYS", _STALE_AFTER_DAYS))
    return timedelta(days=days)
