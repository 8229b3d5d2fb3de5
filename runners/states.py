"""The runner health vocabulary: the signals the sweep observes (``Flag``), the states
and reasons it concludes, the evaluation table between them and the runbook of each
reason. Plain values with no database behind them, shared by the model, its
querysets, the SQL sweep and the pages."""

from __future__ import annotations

import enum

from django.db import models


class Flag(enum.IntFlag):
    """What the sweep observed about a runner, as bits in ``Runner.observed_flags``.

    GitHub and exporter bits are only set from fresh readings: a stale reading sets
    nothing, so it can never make a runner look healthy.
    """

    HEARTBEAT_FRESH = 1
    HEARTBEAT_STALE = 2
    GITHUB_ONLINE = 4
    GITHUB_OFFLINE = 8
    EXPORTER_OK = 16
    EXPORTER_UNREACHABLE = 32
    DISK_LOW = 64
    LOAD_HIGH = 128
    REMOVED = 256
    NEVER_SEEN = 512
    # The latest canary job on the runner was not picked up in time, or failed.
    CANARY_FAILED = 1024


class State(models.TextChoices):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


# How bad each state is: moving up this scale is a fall (HEALTH_FALL_AFTER
# observations), moving down is a recovery (HEALTH_RISE_AFTER). Unknown ranks below
# unhealthy but above degraded: losing all signals is a fall, and regaining trust
# from unknown takes as long as any other recovery.
STATE_RANK: dict[str, int] = {
    State.HEALTHY: 0,
    State.DEGRADED: 1,
    State.UNKNOWN: 2,
    State.UNHEALTHY: 3,
}


class Reason(models.TextChoices):
    NONE = "", "none"
    HEARTBEAT_STALE = "heartbeat_stale", "heartbeat stale"
    GITHUB_OFFLINE = "github_offline", "GitHub says offline"
    SIGNALS_DISAGREE = "signals_disagree", "signals disagree"
    EXPORTER_UNREACHABLE = "exporter_unreachable", "exporter unreachable"
    DISK_LOW = "disk_low", "disk low"
    LOAD_HIGH = "load_high", "load high"
    REMOVED_FROM_GITHUB = "removed_from_github", "removed from GitHub"
    GITHUB_ONLY = "github_only", "only GitHub reports it"
    NO_SIGNAL = "no_signal", "no fresh signal"
    NEVER_SEEN = "never_seen", "never seen"
    CANARY_FAILED = "canary_failed", "canary job failed"


class Rule:
    """One row of the evaluation table: when the observed flags hold all of
    ``required`` and none of ``forbidden``, the runner is ``state`` because of
    ``reason``."""

    __slots__ = ("required", "forbidden", "state", "reason")

    def __init__(
        self, required: Flag, state: State, reason: Reason, forbidden: int = 0
    ) -> None:
        self.required = required
        self.forbidden = forbidden
        self.state = state
        self.reason = reason

    def matches(self, flags: int) -> bool:
        return flags & self.required == self.required and not flags & self.forbidden


# The evaluation table, most severe first: the first matching rule gives the state and
# the primary reason; every matching rule with a reason adds to the reason list. The
# SQL sweep (runners.health) is generated from this table, so Python and SQL agree.
#
# Signals disagreeing: GitHub says offline while the host heartbeats → degraded (the
# host is alive, but GitHub will not hand it jobs, so it leaves deploy rotation
# without paging as dead). The host stops heartbeating while GitHub still says online →
# unhealthy: GitHub's status lags by minutes, the heartbeat is the fast signal.
RULES: tuple[Rule, ...] = (
    Rule(Flag.REMOVED, State.UNHEALTHY, Reason.REMOVED_FROM_GITHUB),
    Rule(Flag.HEARTBEAT_STALE, State.UNHEALTHY, Reason.HEARTBEAT_STALE),
    Rule(
        Flag.HEARTBEAT_STALE | Flag.GITHUB_ONLINE,
        State.UNHEALTHY,
        Reason.SIGNALS_DISAGREE,
    ),
    Rule(
        Flag.GITHUB_OFFLINE,
        State.UNHEALTHY,
        Reason.GITHUB_OFFLINE,
        forbidden=Flag.HEARTBEAT_FRESH,
    ),
    Rule(
        Flag.GITHUB_OFFLINE | Flag.HEARTBEAT_FRESH,
        State.DEGRADED,
        Reason.SIGNALS_DISAGREE,
    ),
    Rule(Flag.EXPORTER_UNREACHABLE, State.DEGRADED, Reason.EXPORTER_UNREACHABLE),
    Rule(Flag.DISK_LOW, State.DEGRADED, Reason.DISK_LOW),
    Rule(Flag.LOAD_HIGH, State.DEGRADED, Reason.LOAD_HIGH),
    # Online and heartbeating, yet its last canary job was not taken or failed: the
    # runner would leave a deploy queued (full work folder, refused version, labels).
    Rule(Flag.CANARY_FAILED, State.DEGRADED, Reason.CANARY_FAILED),
    # A host-level signal (heartbeat or exporter) is needed to be healthy: GitHub's
    # "online" alone only proves the runner process holds a connection to GitHub.
    Rule(Flag.HEARTBEAT_FRESH, State.HEALTHY, Reason.NONE),
    Rule(Flag.EXPORTER_OK, State.HEALTHY, Reason.NONE),
    Rule(Flag.GITHUB_ONLINE, State.UNKNOWN, Reason.GITHUB_ONLY),
    Rule(Flag.NEVER_SEEN, State.UNKNOWN, Reason.NEVER_SEEN),
    Rule(Flag(0), State.UNKNOWN, Reason.NO_SIGNAL),
)


def evaluate_flags(flags: int) -> tuple[State, list[Reason]]:
    """The state the observed ``flags`` call for, and every reason, primary first."""
    matching = [rule for rule in RULES if rule.matches(flags)]
    primary = matching[0]
    reasons = [primary.reason] if primary.reason else []
    # Further problems the observation shows; the catch-all "no signal" style reasons
    # only ever explain an unknown state on their own.
    for rule in matching[1:]:
        if (
            rule.state in (State.UNHEALTHY, State.DEGRADED)
            and rule.reason not in reasons
        ):
            reasons.append(rule.reason)
    return primary.state, reasons


RUNBOOKS: dict[str, str] = {
    Reason.HEARTBEAT_STALE: "runner-heartbeat-stale",
    Reason.GITHUB_OFFLINE: "runner-github-offline",
    Reason.SIGNALS_DISAGREE: "github-offline-heartbeat-ok",
    Reason.EXPORTER_UNREACHABLE: "monitoring-gap",
    Reason.DISK_LOW: "runner-degraded",
    Reason.LOAD_HIGH: "runner-degraded",
    Reason.REMOVED_FROM_GITHUB: "runner-removed",
    Reason.GITHUB_ONLY: "monitoring-gap",
    Reason.NO_SIGNAL: "monitoring-gap",
    Reason.NEVER_SEEN: "monitoring-gap",
    Reason.CANARY_FAILED: "canary-failed",
}


def runbook_for(reason: str) -> str:
    """The slug of the runbook page for a reason code ("" when there is nothing to do)."""
    return RUNBOOKS.get(reason, "")
