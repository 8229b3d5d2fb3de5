"""The runner registry: every self-hosted runner, its signals, health and history.

Writers of the signal columns:

- the GitHub sync sets ``github_id``, ``labels`` (with their label set, see
  ``runners.label_sets``), ``os``, ``github_status``, ``github_busy``,
  ``github_seen_at`` (and ``removed_at`` when GitHub no longer lists the runner), in
  bulk;
- the heartbeat endpoint (``runners.heartbeat``) sets ``last_heartbeat_at``,
  ``heartbeat_deadline``, ``facts`` and ``facts_problems`` in one UPDATE;
- the deploying runners' check (``runners.deploying``) alone writes
  ``holds_deploy``;
- the exporter probe sets ``exporter_ok``, ``exporter_problems``,
  ``exporter_checked_at`` and ``exporter_detail``;
- the health sweep (``runners.health``) alone writes ``observed_flags``, the streaks,
  ``state``, ``reason`` and ``state_since``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from django.apps import apps
from django.contrib.auth.models import AnonymousUser, User
from django.db import models, transaction
from django.db.models import Aggregate, Count, Prefetch, Q
from django.utils import timezone

from controlplane import audit
from runners import freshness
from runners.canary_fields import CanaryFields
from runners.hygiene_fields import RunnerHygieneFields
from runners.hygiene_fields import RunnerRelease as RunnerRelease
from runners.label_sets import LabelSetFields, LabelSetQuerySet
from runners.retention_fields import RetentionFields

# The health vocabulary lives in runners.states; these names stay importable from
# here, where the rest of the project (and the API schema's enum paths) find them.
from runners.states import Flag as Flag
from runners.states import Reason as Reason
from runners.states import State as State
from runners.states import evaluate_flags as evaluate_flags
from runners.states import runbook_for as runbook_for

# Heartbeat tokens carry a recognisable prefix so secret scanners and humans can tell
# what a leaked string is.
TOKEN_PREFIX = "rhb_"


def token_digest(token: str) -> str:
    """The stored form of a heartbeat token: its SHA-256, hex encoded.

    A plain hash is enough because the token is 256 random bits, not a password."""
    return hashlib.sha256(token.encode()).hexdigest()


class RunnerQuerySet(LabelSetQuerySet["Runner"]):
    def active(self) -> RunnerQuerySet:
        """Runners GitHub still lists (or that were never synced yet)."""
        return self.filter(removed_at__isnull=True)

    def eligible_for_deploy(self) -> RunnerQuerySet:
        """Runners a deploy may be sent to: healthy, not drained, not removed."""
        return self.active().filter(state=State.HEALTHY, drained=False)

    # Freshness filters (see runners.freshness); chain active() where removed
    # runners should not count.

    def heartbeat_stale(self, now: datetime) -> RunnerQuerySet:
        """Runners that heartbeated once and have missed their deadline."""
        return self.filter(freshness.heartbeat_stale(now))

    def heartbeat_fresh(self, now: datetime) -> RunnerQuerySet:
        return self.filter(freshness.heartbeat_fresh(now))

    def github_fresh(self, now: datetime) -> RunnerQuerySet:
        return self.filter(freshness.github_fresh(now))

    def exporter_fresh(self, now: datetime) -> RunnerQuerySet:
        """Runners whose exporter was probed recently, whatever the probe found."""
        return self.filter(freshness.exporter_fresh(now))

    def coverage(self, now: datetime, **extra: Aggregate) -> dict[str, int]:
        """How many active runners each signal of ``freshness.SIGNALS`` reports for
        at ``now``, and how many active runners there are (``active``), in one
        aggregate query that also computes the caller's ``extra`` aggregates.

        The fleet page and the coverage metric both count with this, so they agree.
        """
        active = Q(removed_at__isnull=True)
        signals = {
            signal: Count("pk", filter=active & condition)
            for signal, condition in freshness.reporting(now).items()
        }
        counts: dict[str, int] = self.aggregate(
            active=Count("pk", filter=active), **signals, **extra
        )
        return counts

    def with_pools(self) -> RunnerQuerySet:
        """These runners with their places in environment pools (``pool_entries``)
        loaded in one more query whatever their number, ordered by environment."""
        # The pool belongs to deploys, which builds on this app: named, not
        # imported, so imports keep going one way.
        pool_entry = apps.get_model("deploys", "EnvironmentRunner")
        entries = pool_entry._default_manager.select_related("environment").order_by(
            "environment__name", "pk"
        )
        return self.prefetch_related(Prefetch("pool_entries", queryset=entries))


class Runner(
    RunnerHygieneFields, RetentionFields, CanaryFields, LabelSetFields, models.Model
):
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
    # The runner holds an active deploy attempt: an agent that follows the answer's
    # interval is told to beat every HEARTBEAT_DEPLOY_INTERVAL seconds, and its
    # heartbeats get the HEARTBEAT_DEPLOY_STALE_AFTER deadline (runners.deploying).
    holds_deploy = models.BooleanField(default=False)

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

    # Trust override (runners.trust) ------------------------------------------------
    # An SRE vouches for the runner for a bounded time: deploys may go to it whatever
    # its health or an environment's signal policy (not when drained, removed or
    # offline in GitHub). Kept after expiry, which is judged at read time, so the
    # "outlived its reason" alert can see it; clearing early empties them.
    trusted_until = models.DateTimeField(null=True, blank=True)
    trusted_by = models.CharField(max_length=150, blank=True)
    trusted_reason = models.CharField(max_length=500, blank=True)
    trusted_at = models.DateTimeField(null=True, blank=True)

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
            # The deploying runners' check, every second: the few runners holding
            # a deploy. Heartbeats only read the column, so they stay HOT updates.
            models.Index(
                fields=["holds_deploy"],
                name="runner_holds_deploy_idx",
                condition=Q(holds_deploy=True),
            ),
            # The fleet list filtered by state, ordered by name; deploy gating's
            # eligible_for_deploy().
            models.Index(
                fields=["state", "name"],
                name="runner_active_state_idx",
                condition=Q(removed_at__isnull=True),
            ),
            # The home page's runner counts (runners.board): active runners grouped
            # by state, reason and drain flag, read from the index alone.
            models.Index(
                fields=["state", "reason", "drained"],
                name="runner_active_board_idx",
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
            audit.record(actor, "runner.token_issue", self)
        return token

    def revoke_heartbeat_token(self, actor: audit.Actor = None) -> None:
        """Stop accepting heartbeats from this runner until a new token is issued."""
        with transaction.atomic():
            self.heartbeat_token_digest = None
            self.save(update_fields=["heartbeat_token_digest", "updated"])
            self._log(RunnerEvent.Kind.TOKEN_ROTATED, actor, "heartbeat token revoked")
            audit.record(actor, "runner.token_revoke", self)

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

    # The instance forms of the freshness filters, for rows already loaded.

    def heartbeat_is_fresh(self, now: datetime) -> bool:
        deadline = self.heartbeat_deadline
        return deadline is not None and deadline > now

    def github_is_fresh(self, now: datetime) -> bool:
        seen = self.github_seen_at
        return seen is not None and seen > freshness.github_fresh_after(now)

    def exporter_is_fresh(self, now: datetime) -> bool:
        checked = self.exporter_checked_at
        return checked is not None and checked > freshness.exporter_fresh_after(now)

    def trusted_at_now(self, now: datetime) -> bool:
        """Whether a trust override is in force at ``now`` (expired ones are not)."""
        return self.trusted_until is not None and self.trusted_until > now

    @property
    def trust(self) -> Runner | None:
        """The runner itself while a trust override is in force, for templates
        (``{% if runner.trust %}``); None otherwise."""
        return self if self.trusted_at_now(timezone.now()) else None

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
        TRUSTED = "trusted"
        UNTRUSTED = "untrusted"
        # A hygiene flag set or cleared (runners.versions, runners.name_labels).
        FLAGGED = "flagged"
        UNFLAGGED = "unflagged"

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
