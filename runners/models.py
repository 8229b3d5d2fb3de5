"""The runner registry: every self-hosted runner, its signals, health and history.

Writers of the signal columns:

- the GitHub sync sets ``github_id``, ``labels``, ``os``, ``github_status``,
  ``github_busy``, ``github_seen_at`` (and ``removed_at`` when GitHub no longer lists
  the runner), in bulk;
- the heartbeat endpoint (``runners.heartbeat``) sets ``last_heartbeat_at``,
  ``heartbeat_deadline``, ``facts`` and ``facts_problems`` in one UPDATE;
- the exporter probe sets ``exporter_ok``, ``exporter_problems``,
  ``exporter_checked_at`` and ``exporter_detail``;
- the health sweep (``runners.health``) alone writes ``observed_flags``, the streaks,
  ``state``, ``reason`` and ``state_since``.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from controlplane import audit

# Heartbeat tokens carry a recognisable prefix so secret scanners and humans can tell
# what a leaked string is.
TOKEN_PREFIX = "rhb_"


def token_digest(token: str) -> str:
    """The stored form of a heartbeat token: its SHA-256, hex encoded.

    A plain hash is enough because the token is 256 random bits, not a password."""
    return hashlib.sha256(token.encode()).hexdigest()


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
}


def runbook_for(reason: str) -> str:
    """The slug of the runbook page for a reason code ("" when there is nothing to do)."""
    return RUNBOOKS.get(reason, "")


class RunnerQuerySet(models.QuerySet["Runner"]):
    def active(self) -> RunnerQuerySet:
        """Runners GitHub still lists (or that were never synced yet)."""
        return self.filter(removed_at__isnull=True)

    def eligible_for_deploy(self) -> RunnerQuerySet:
        """Runners a deploy may be sent to: healthy, not drained, not removed."""
        return self.active().filter(state=State.HEALTHY, drained=False)

    def heartbeat_stale(self, now: datetime) -> RunnerQuerySet:
        """Active runners that heartbeated once and have missed their deadline."""
        return self.active().filter(heartbeat_deadline__lte=now)

    def heartbeat_fresh(self, now: datetime) -> RunnerQuerySet:
        return self.active().filter(heartbeat_deadline__gt=now)


class Runner(models.Model):
    """A self-hosted GitHub Actions runner: its signals, health state and drain flag."""

    # Registry (GitHub sync) ------------------------------------------------------
    # Null until the sync has seen it: an admin may register a runner (and issue its
    # heartbeat token) before the host is up.
    github_id = models.BigIntegerField(null=True, blank=True, unique=True)
    # The runner's unique label: deploys target it with `runs-on`.
    name = models.CharField(max_length=100, unique=True)
    labels = models.JSONField(default=list, blank=True)
    os = models.CharField(max_length=50, blank=True)
    github_status = models.CharField(
        max_length=10,
        blank=True,
        choices=[("online", "online"), ("offline", "offline"), ("", "unknown")],
    )
    github_busy = models.BooleanField(default=False)
    github_seen_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    host = models.CharField(max_length=255, blank=True)
    exporter_url = models.URLField(max_length=500, blank=True)

    # Heartbeat -------------------------------------------------------------------------
    # Unique through Meta.constraints rather than unique=True, which on PostgreSQL
    # would add a second (LIKE pattern) index for the heartbeat path to maintain.
    # NULL (not "") when no token is issued: NULLs never collide in the constraint.
    heartbeat_token_digest = models.CharField(  # noqa: DJ001
        max_length=64, null=True, blank=True, editable=False
    )
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # last_heartbeat_at + HEARTBEAT_STALE_AFTER, written with the heartbeat so the
    # sweep and the "stale" filters compare one column with now. Deliberately not
    # indexed, like every column a heartbeat writes: then PostgreSQL can apply the
    # 1,000 heartbeats a second as HOT updates that touch no index at all, while
    # the queries on it (stale counts, the fleet filter) scan 10,000 rows in
    # milliseconds anyway.
    heartbeat_deadline = models.DateTimeField(null=True, blank=True)
    # The facts of the latest heartbeat: runner_version, disk_free_bytes,
    # disk_total_bytes, load1, cpus, uptime_seconds (each optional).
    facts = models.JSONField(default=dict, blank=True)
    # Flag.DISK_LOW / Flag.LOAD_HIGH judged from those facts when they arrived.
    facts_problems = models.PositiveIntegerField(default=0)

    # Exporter probe ----------------------------------------------------------------------
    # True: reachable and parsed; False: unreachable or unparseable; None: never probed.
    exporter_ok = models.BooleanField(null=True, blank=True)
    # Flag.DISK_LOW / Flag.LOAD_HIGH judged from the exporter's metrics.
    exporter_problems = models.PositiveIntegerField(default=0)
    exporter_checked_at = models.DateTimeField(null=True, blank=True)
    exporter_detail = models.JSONField(default=dict, blank=True)

    # Health (written by the sweep only) ------------------------------------------------
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.UNKNOWN
    )
    reason = models.CharField(
        max_length=30, choices=Reason.choices, default=Reason.NEVER_SEEN, blank=True
    )
    state_since = models.DateTimeField(default=timezone.now)
    # Flags of the latest observation (see Flag), kept so the UI can list every reason.
    observed_flags = models.PositiveIntegerField(default=int(Flag.NEVER_SEEN))
    # Consecutive observations worse (bad) or better (good) than the current state.
    bad_streak = models.PositiveSmallIntegerField(default=0)
    good_streak = models.PositiveSmallIntegerField(default=0)

    # Drain ----------------------------------------------------------------------------------
    drained = models.BooleanField(default=False)
    drained_reason = models.CharField(max_length=500, blank=True)
    drained_by = models.CharField(max_length=150, blank=True)
    drained_at = models.DateTimeField(null=True, blank=True)

    first_seen_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)

    objects = RunnerQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]
        indexes = [
            # The sweep's transition step: runners with a streak under way
            # (bad_streak >= FALL_AFTER or good_streak >= RISE_AFTER); few rows.
            models.Index(
                fields=["bad_streak", "good_streak"],
                name="runner_streak_idx",
                condition=Q(bad_streak__gt=0) | Q(good_streak__gt=0),
            ),
            # The fleet list filtered by state, ordered by name; deploy gating's
            # eligible_for_deploy().
            models.Index(
                fields=["state", "name"],
                name="runner_active_state_idx",
                condition=Q(removed_at__isnull=True),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=State.values), name="runner_state_valid"
            ),
            # The heartbeat's one UPDATE finds its runner through this index.
            models.UniqueConstraint(
                fields=["heartbeat_token_digest"], name="runner_token_digest_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    # Tokens -----------------------------------------------------------------------------

    def issue_heartbeat_token(self, actor: audit.Actor = None) -> str:
        """Give the runner a new heartbeat token and return it: the only time the
        plaintext exists. The previous token stops working at once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with transaction.atomic():
            self.heartbeat_token_digest = token_digest(token)
            self.save(update_fields=["heartbeat_token_digest", "updated"])
            self._log(RunnerEvent.Kind.TOKEN_ROTATED, actor, "heartbeat token issued")
            audit.record(actor, "runner.token_rotated", self)
        return token

    def revoke_heartbeat_token(self, actor: audit.Actor = None) -> None:
        """Stop accepting heartbeats from this runner until a new token is issued."""
        with transaction.atomic():
            self.heartbeat_token_digest = None
            self.save(update_fields=["heartbeat_token_digest", "updated"])
            self._log(RunnerEvent.Kind.TOKEN_ROTATED, actor, "heartbeat token revoked")
            audit.record(actor, "runner.token_revoked", self)

    # Drain ----------------------------------------------------------------------------------

    def drain(self, actor: User | AnonymousUser | str, reason: str) -> None:
        """Take the runner out of deploy rotation, whatever its health."""
        reason = reason.strip()
        if not reason:
            raise ValueError("a reason is needed to drain a runner")
        with transaction.atomic():
            self.drained = True
            self.drained_reason = reason[:500]
            self.drained_by = audit.actor_name(actor)
            self.drained_at = timezone.now()
            self.save(
                update_fields=[
                    "drained",
                    "drained_reason",
                    "drained_by",
                    "drained_at",
                    "updated",
                ]
            )
            self._log(RunnerEvent.Kind.DRAINED, actor, reason)
            audit.record(actor, "runner.drain", self, reason=reason)

    def undrain(self, actor: User | AnonymousUser | str) -> None:
        """Put a drained runner back into deploy rotation."""
        with transaction.atomic():
            self.drained = False
            self.drained_reason = ""
            self.drained_by = ""
            self.drained_at = None
            self.save(
                update_fields=[
                    "drained",
                    "drained_reason",
                    "drained_by",
                    "drained_at",
                    "updated",
                ]
            )
            self._log(RunnerEvent.Kind.UNDRAINED, actor, "")
            audit.record(actor, "runner.undrain", self)

    # Health ---------------------------------------------------------------------------------

    @property
    def reasons(self) -> list[Reason]:
        """Every reason the latest observation found, primary first."""
        return evaluate_flags(self.observed_flags)[1]

    @property
    def runbook_slug(self) -> str:
        return runbook_for(self.reason)

    def is_eligible_for_deploy(self) -> bool:
        return not self.ineligibility_reasons()

    def ineligibility_reasons(self) -> list[str]:
        """Why a deploy may not go to this runner now, in words (empty: it may)."""
        why: list[str] = []
        if self.removed_at is not None:
            why.append("removed from GitHub")
        if self.drained:
            why.append(
                f"drained by {self.drained_by or 'someone'}: {self.drained_reason}"
            )
        if self.state != State.HEALTHY:
            text = f"{self.state}"
            if self.reason:
                text += f" ({Reason(self.reason).label})"
            why.append(text)
        return why

    def _log(
        self, kind: RunnerEvent.Kind, actor: audit.Actor, message: str
    ) -> RunnerEvent:
        return RunnerEvent.objects.create(
            runner=self,
            kind=kind,
            from_state=self.state,
            to_state=self.state,
            message=message[:500],
            actor=audit.actor_name(actor),
        )


class HealthSample(models.Model):
    """One observation of one signal of one runner (kept HEALTH_RETENTION_DAYS)."""

    class Source(models.TextChoices):
        GITHUB = "github"
        HEARTBEAT = "heartbeat"
        EXPORTER = "exporter"

    runner = models.ForeignKey(
        Runner, on_delete=models.CASCADE, related_name="health_samples"
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    ok = models.BooleanField()
    observed_at = models.DateTimeField(default=timezone.now)
    latency_ms = models.FloatField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-observed_at", "-pk"]
        indexes = [
            # A runner's timeline: its samples in the last 24 h, newest first.
            models.Index(
                fields=["runner", "-observed_at"], name="sample_runner_time_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.runner_id} {self.source} {'ok' if self.ok else 'bad'}"


class RunnerEvent(models.Model):
    """Something that happened to a runner: a health transition, a drain, a token."""

    class Kind(models.TextChoices):
        STATE_CHANGE = "state_change"
        DRAINED = "drained"
        UNDRAINED = "undrained"
        APPEARED = "appeared"
        REMOVED = "removed"
        TOKEN_ROTATED = "token_rotated"

    runner = models.ForeignKey(Runner, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_state = models.CharField(max_length=10, choices=State.choices, blank=True)
    to_state = models.CharField(max_length=10, choices=State.choices, blank=True)
    # Reason codes (Reason values), primary first.
    reasons = models.JSONField(default=list, blank=True)
    message = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # A runner's event list on its detail page, newest first.
            models.Index(
                fields=["runner", "-created_at"], name="event_runner_time_idx"
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.STATE_CHANGE:
            return f"{self.runner_id}: {self.from_state} → {self.to_state}"
        return f"{self.runner_id}: {self.kind}"

    @property
    def reason(self) -> str:
        """The primary reason code ("" when there is none)."""
        return str(self.reasons[0]) if self.reasons else ""

    @property
    def runbook_slug(self) -> str:
        return runbook_for(self.reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "reasons": list(self.reasons),
            "runbook": self.runbook_slug,
            "message": self.message,
            "actor": self.actor,
            "created_at": self.created_at.isoformat(),
        }


class RunnerSync(models.Model):
    """What the GitHub runner-list sync remembers for one scope: page ETags, schedule."""

    # The runner list's API path (repository or organization), so switching scope
    # starts from a clean slate instead of trusting another list's ETags.
    scope = models.CharField(max_length=300, unique=True)
    # One entry per page of the last complete sweep, in page order:
    # {"etag": "...", "ids": [github ids listed on that page]}. A 304 answer for a
    # page means exactly these runners are still listed there.
    pages = models.JSONField(default=list, blank=True)
    total_count = models.IntegerField(null=True, blank=True)
    # The sync task runs every few seconds and does nothing until this passes; a
    # running sweep pushes it ahead (a lease) so two workers never sweep together.
    next_sync_at = models.DateTimeField(default=timezone.now)
    interval_seconds = models.FloatField(default=0.0)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_requests = models.PositiveIntegerField(default=0)
    last_not_modified = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["scope", "pk"]

    def __str__(self) -> str:
        return f"runner sync of {self.scope}"
