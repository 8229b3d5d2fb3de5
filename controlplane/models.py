"""Cross-cutting records: the audit log, GitHub API usage, background task status."""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone


class AuditEvent(models.Model):
    """One state-changing action: who did what to which object, and how it ended."""

    class Outcome(models.TextChoices):
        SUCCESS = "success"
        FAILURE = "failure"
        DENIED = "denied"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept apart from the FK so the row still says who it was after the user is deleted,
    # and so system actors (beat, webhooks, a runner's token) have a name too.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    request_id = models.CharField(max_length=64, blank=True)
    # Never a secret value: callers pass names, ids and reasons only.
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # The audit page filtered to one object's history.
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.target_repr} ({self.outcome})"


class GitHubUsageQuerySet(models.QuerySet["GitHubUsage"]):
    def record(
        self,
        *,
        counter: str,
        headers: dict[str, Any] | None = None,
        purpose: str = "",
    ) -> None:
        """Count one response and note the budget the response reported; responses
        and 304s are also counted under the request's ``purpose``."""
        if purpose and counter in GitHubPurposeUsage.COUNTERS:
            GitHubPurposeUsage.objects.record(purpose, counter)
        updates: dict[str, Any] = {
            counter: F(counter) + 1,
            "observed_at": timezone.now(),
        }
        if headers:
            for header, field in (
                ("x-ratelimit-remaining", "rate_limit_remaining"),
                ("x-ratelimit-limit", "rate_limit_limit"),
                ("x-ratelimit-reset", "rate_limit_reset"),
            ):
                value = headers.get(header)
                if value is not None and str(value).isdigit():
                    updates[field] = int(value)
        if not self.filter(pk=1).update(**updates):
            # First use: create the row, then count (a racing creator is harmless).
            self.get_or_create(pk=1)
            self.filter(pk=1).update(**updates)


class GitHubUsage(models.Model):
    """Counters of GitHub API use by every process, and the last budget GitHub reported.

    Kept in the database, not in process memory, so that /metrics served by any web
    process reports what all workers did.
    """

    requests_total = models.BigIntegerField(default=0)
    not_modified_total = models.BigIntegerField(default=0)
    errors_total = models.BigIntegerField(default=0)
    retries_total = models.BigIntegerField(default=0)
    rate_limited_total = models.BigIntegerField(default=0)
    rate_limit_remaining = models.IntegerField(null=True, blank=True)
    rate_limit_limit = models.IntegerField(null=True, blank=True)
    rate_limit_reset = models.BigIntegerField(null=True, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)

    objects = GitHubUsageQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]
        verbose_name_plural = "GitHub usage"

    def __str__(self) -> str:
        return f"GitHub usage: {self.requests_total} requests"


class GitHubPurposeUsageQuerySet(models.QuerySet["GitHubPurposeUsage"]):
    def record(self, purpose: str, counter: str) -> None:
        if not self.filter(purpose=purpose).update(**{counter: F(counter) + 1}):
            # First use of this purpose (a racing creator is harmless).
            self.get_or_create(purpose=purpose)
            self.filter(purpose=purpose).update(**{counter: F(counter) + 1})

    def shares(self) -> list[dict[str, Any]]:
        """Per purpose, most spent first: charged requests (responses that were not
        304), 304s, and the share of all charged requests."""
        counts = [
            (row.purpose, row.requests_total - row.not_modified_total, row)
            for row in self.all()
        ]
        total = sum(spent for _, spent, _ in counts)
        rows = [
            {
                "purpose": purpose,
                "charged": spent,
                "not_modified": row.not_modified_total,
                "share": spent / total if total else 0.0,
            }
            for purpose, spent, row in counts
        ]
        return sorted(rows, key=lambda r: (-int(r["charged"]), str(r["purpose"])))


class GitHubPurposeUsage(models.Model):
    """GitHub API responses counted by why they were requested (sync, deploy_poll,
    dispatch, ...: ``controlplane.github.purpose``), by every process."""

    COUNTERS = ("requests_total", "not_modified_total")

    purpose = models.CharField(max_length=40, primary_key=True)
    requests_total = models.BigIntegerField(default=0)
    not_modified_total = models.BigIntegerField(default=0)

    objects = GitHubPurposeUsageQuerySet.as_manager()

    class Meta:
        ordering = ["purpose"]
        verbose_name_plural = "GitHub usage by purpose"

    def __str__(self) -> str:
        return f"{self.purpose}: {self.requests_total} requests"


class TaskStatusQuerySet(models.QuerySet["TaskStatus"]):
    def record(self, name: str, *, ok: bool, duration: float, error: str = "") -> None:
        now = timezone.now()
        values: dict[str, Any] = {"last_duration_seconds": duration}
        if ok:
            values["last_success_at"] = now
        else:
            values.update(last_failure_at=now, last_error=error[:500])
        self.update_or_create(name=name, defaults=values)


class TaskStatus(models.Model):
    """When a periodic job (sync, sweep, probe, reconcile, audit, beat tick) last ran."""

    name = models.CharField(max_length=50, primary_key=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_duration_seconds = models.FloatField(default=0.0)
    last_error = models.CharField(max_length=500, blank=True)

    objects = TaskStatusQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "task statuses"

    def __str__(self) -> str:
        return self.name


# Leadership leases -----------------------------------------------------------------


# The lease the leading Celery beat holds (controlplane/beat.py).
BEAT_LEASE = "beat"


class LeaseQuerySet(models.QuerySet["Lease"]):
    """Claims on a named lease. Every comparison and expiry uses the database's
    clock (``Now()``), so processes on hosts whose clocks disagree still agree on
    who holds it; each claim is one conditional UPDATE, so two never both win."""

    def renew(self, name: str, holder: str, *, seconds: int) -> bool:
        """Extend ``holder``'s unexpired lease; False if it lapsed or is another's."""
        return bool(
            self.filter(name=name, holder=holder, expires_at__gt=Now()).update(
                renewed_at=Now(), expires_at=_now_plus(seconds)
            )
        )

    def acquire(self, name: str, holder: str, *, seconds: int) -> bool:
        """Take the lease if nobody holds it (never claimed, expired, released) or
        ``holder`` still does (it stopped leading on an error and starts again)."""
        fields: dict[str, Any] = {
            "holder": holder,
            "acquired_at": Now(),
            "renewed_at": Now(),
            "expires_at": _now_plus(seconds),
        }
        free = Q(expires_at__lte=Now()) | Q(holder=holder)
        if self.filter(free, name=name).update(**fields):
            return True
        if self.filter(name=name).exists():
            return False  # held, and not expired
        try:
            with transaction.atomic():
                self.create(name=name, **fields)
        except IntegrityError:
            return False  # another process created it first, and holds it
        return True

    def release(self, name: str, holder: str) -> None:
        """Give the lease up now, so a standby takes it at its next attempt."""
        self.filter(name=name, holder=holder).update(expires_at=Now())

    def holder_of(self, name: str) -> str | None:
        """Who holds the lease now, or None if nobody does."""
        lease = self.filter(name=name, expires_at__gt=Now()).first()
        return lease.holder if lease else None


def _now_plus(seconds: int) -> models.Expression:
    return models.ExpressionWrapper(
        Now() + datetime.timedelta(seconds=seconds),
        output_field=models.DateTimeField(),
    )


class Lease(models.Model):
    """A named leadership lease: which process leads (the Celery beat) and until when."""

    name = models.CharField(max_length=50, primary_key=True)
    # "host:pid:nonce" of the process holding it; kept after expiry, so the row still
    # says who led last.
    holder = models.CharField(max_length=200)
    acquired_at = models.DateTimeField()
    renewed_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    objects = LeaseQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.holder} until {self.expires_at:%H:%M:%S}"


# Notification outbox ------------------------------------------------------------------


class NotificationQuerySet(models.QuerySet["Notification"]):
    def due(self, now: Any) -> NotificationQuerySet:
        """Pending notifications whose next delivery attempt may start now."""
        return self.filter(state=Notification.State.PENDING, next_attempt_at__lte=now)


class Notification(models.Model):
    """One message to one configured target (webhook), sent from this outbox."""

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    FINAL_STATES = (State.SENT, State.FAILED)

    kind = models.CharField(max_length=50)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    subject = models.CharField(max_length=200)
    message = models.CharField(max_length=2000, blank=True)
    # Absolute URL of the page (deploy, runner, runbook) an SRE opens first.
    link = models.URLField(max_length=500, blank=True)
    runbook = models.URLField(max_length=500, blank=True)
    # Names, ids, states and reasons only: never a secret value.
    fields = models.JSONField(default=dict, blank=True)
    # What the notification is about ("deploy-failed:42"): with ``target`` it makes
    # creating the same notification twice (a rescan, a retried task) a no-op.
    dedupe_key = models.CharField(max_length=200)
    # "json:<digest>" or "slack:<digest>": the target's URL carries credentials (a
    # Slack hook's path is its token), so only a digest of it is stored.
    target = models.CharField(max_length=80)
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    # When a deliverer may next try; a claim pushes it one lease ahead, so a
    # deliverer killed mid-send leaves the row to be retried, never lost.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key", "target"], name="notification_dedupe_uniq"
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=["pending", "sent", "failed"]),
                name="notification_state_valid",
            ),
        ]
        indexes = [
            # The deliverer's scan: Notification.objects.due(now).
            models.Index(
                fields=["next_attempt_at"],
                name="notification_due_idx",
                condition=models.Q(state="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.target} ({self.state})"


class NotificationCursor(models.Model):
    """How far the outbox scanner has read one event table (a high-water mark)."""

    source = models.CharField(max_length=50, primary_key=True)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["source"]

    def __str__(self) -> str:
        return f"{self.source} read up to #{self.last_id}"


class AuthFailureCount(models.Model):
    """Recent failed sign-ins or token uses of one account or client address, and
    the lockout they caused (``controlplane.throttle``)."""

    class Scope(models.TextChoices):
        LOGIN_ACCOUNT = "login-account"
        LOGIN_ADDRESS = "login-address"
        API_TOKEN_ADDRESS = "api-token-address"
        HEARTBEAT_ADDRESS = "heartbeat-address"
        SD_TOKEN_ADDRESS = "sd-token-address"

    scope = models.CharField(max_length=20, choices=Scope.choices)
    # A username or a client address; never a password or a token.
    key = models.CharField(max_length=200)
    failures = models.PositiveIntegerField(default=0)
    window_started_at = models.DateTimeField()
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["scope", "key", "pk"]
        constraints = [
            # Also the index every lock check and failure count goes through.
            models.UniqueConstraint(
                fields=["scope", "key"], name="authfailure_scope_key_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.key}: {self.failures} failures"


class CodeSchedule(models.Model):
    """What the code last wrote to one periodic task (``controlplane.schedules``):
    a field still holding that value is the code's to update, any other value is an
    admin's edit and is kept."""

    # django-celery-beat's PeriodicTask.name, which is unique and as long.
    name = models.CharField(max_length=200)
    # Field name to the value last written, as ``schedules.Schedule.values()`` gives.
    values = models.JSONField(default=dict)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["name"], name="codeschedule_name_uniq"),
        ]

    def __str__(self) -> str:
        return self.name
