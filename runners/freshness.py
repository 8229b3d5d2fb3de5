"""When a runner's signal counts as fresh, defined once for the sweep, the pages, the
API and the metrics.

A reading is fresh while it is younger than its signal's limit: a heartbeat until
the deadline written with it (``HEARTBEAT_STALE_AFTER``), GitHub's status for
``GITHUB_STATUS_STALE_AFTER``, an exporter probe for ``EXPORTER_STALE_AFTER``.

Coverage (DESIGN.md principle 3: which signals are actually reporting) counts a
signal for a runner only when it reports: a fresh heartbeat; a fresh GitHub status,
online or offline (either way GitHub reported the runner); a fresh *successful*
exporter probe. A probe that found the exporter unreachable is a fresh observation
for the sweep (it makes the runner degraded), but the exporter reported nothing.

The conditions are ``Q`` objects on the runner's own columns, so they serve as
filters, as ``Count(filter=...)`` and inside the sweep's CASE expressions alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q

# The signals coverage is reported for, in display order (the metric's labels).
SIGNALS = ("github", "heartbeat", "exporter")


def github_fresh_after(now: datetime) -> datetime:
    """GitHub status readings taken after this are fresh at ``now``."""
    return now - timedelta(seconds=settings.GITHUB_STATUS_STALE_AFTER)


def exporter_fresh_after(now: datetime) -> datetime:
    """Exporter probes made after this are fresh at ``now``."""
    return now - timedelta(seconds=settings.EXPORTER_STALE_AFTER)


def github_fresh(now: datetime) -> Q:
    return Q(github_seen_at__gt=github_fresh_after(now))


def heartbeat_fresh(now: datetime) -> Q:
    return Q(heartbeat_deadline__gt=now)


def heartbeat_stale(now: datetime) -> Q:
    """Heartbeated once and missed the deadline (never heartbeated is neither)."""
    return Q(heartbeat_deadline__lte=now)


def exporter_fresh(now: datetime) -> Q:
    """A recent probe, whatever it found."""
    return Q(exporter_checked_at__gt=exporter_fresh_after(now))


def exporter_reporting(now: datetime) -> Q:
    """A recent probe that reached and parsed the exporter."""
    return exporter_fresh(now) & Q(exporter_ok=True)


def reporting(now: datetime) -> dict[str, Q]:
    """Each signal of ``SIGNALS`` with the condition under which it reports."""
    return {
        "github": github_fresh(now),
        "heartbeat": heartbeat_fresh(now),
        "exporter": exporter_reporting(now),
    }


def reevaluating(runner: Any, now: datetime) -> str:
    """Why the runner's stored state no longer matches its newest signals, in
    words ("" when it does).

    The state is the sweep's verdict, written with hysteresis; the signals are read
    live. After a restart or an outage of the sweep, a heartbeat can already be
    fresh while the state still says "heartbeat stale" (or the reverse). Pages show
    this instead of two facts that contradict each other.
    """
    from runners.states import Reason, State

    heartbeat = runner.heartbeat_deadline
    fresh = heartbeat is not None and heartbeat > now
    if runner.reason in (Reason.HEARTBEAT_STALE, Reason.NO_SIGNAL) and fresh:
        return "heartbeats resumed: the health sweep is re-evaluating this runner"
    if runner.state == State.HEALTHY and heartbeat is not None and not fresh:
        return "heartbeat overdue: the health sweep is re-evaluating this runner"
    return ""
