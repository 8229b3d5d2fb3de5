"""Deploys app: GitHub webhook deliveries and the workflow jobs they report;
environments, their runner pools and the deploy runs sent to them."""

from __future__ import annotations

import calendar
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from controlplane import audit
from controlplane.names import (
    validate_repository,
    validate_secret_names,
    validate_workflow_file,
)


class WebhookDeliveryQuerySet(models.QuerySet["WebhookDelivery"]):
    def older_than(self, cutoff: datetime) -> WebhookDeliveryQuerySet:
        return self.filter(received_at__lt=cutoff)


class WebhookDelivery(models.Model):
    """One webhook delivery from GitHub, stored before it is processed."""

    class Outcome(models.TextChoices):
        PENDING = "pending"  # stored, not processed yet
        MATCHED = "matched"  # it concerned a deploy or a registered runner
        UNMATCHED = "unmatched"  # ours, but nothing here waited for it
        IGNORED = "ignored"  # not for us: another repository or an unused event
        FAILED = "failed"  # malformed, or processing raised (see ``error``)

    FINAL_OUTCOMES = (
        Outcome.MATCHED,
        Outcome.UNMATCHED,
        Outcome.IGNORED,
        Outcome.FAILED,
    )

    # GitHub's X-GitHub-Delivery: one id per event, kept across redeliveries, so a
    # unique constraint on it makes processing exactly-once.
    delivery_id = models.CharField(max_length=64)
    event = models.CharField(max_length=50)
    action = models.CharField(max_length=50, blank=True)
    # None when the body was not a JSON object (the delivery is then failed).
    payload = models.JSONField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=10, choices=Outcome.choices, default=Outcome.PENDING
    )
    # Why a delivery was ignored or unmatched, in words an SRE can act on.
    reason = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=500, blank=True)
    repository = models.CharField(max_length=200, blank=True)
    github_run_id = models.BigIntegerField(null=True, blank=True)
    deploy_run = models.ForeignKey(
        "DeployRun",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="webhook_deliveries",
    )

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["delivery_id"], name="webhook_delivery_id_uniq"
            )
        ]
        indexes = [
            # The reconciler's "deliveries not processed yet" scan.
            models.Index(
                fields=["received_at"],
                name="webhook_unprocessed_idx",
                condition=models.Q(processed_at__isnull=True),
            ),
            # The Webhooks page (newest first), its time filter and the pruning.
            models.Index(fields=["received_at"], name="webhook_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event}.{self.action} {self.delivery_id}"


class WebhookHook(models.Model):
    """The GitHub webhook that delivers to us, and how far its log was checked."""

    class Scope(models.TextChoices):
        REPOSITORY = "repository"
        ORGANIZATION = "organization"

    scope = models.CharField(max_length=12, choices=Scope.choices)
    # owner/name for a repository hook, the login for an organization hook.
    owner = models.CharField(max_length=200)
    hook_id = models.BigIntegerField()
    # Deliveries made before this were all checked by an earlier, complete scan.
    checked_until = models.DateTimeField(null=True, blank=True)
    # A scan of the log that a pass's request cap cut short goes on from here next
    # pass (GitHub's cursor, "" for the first page), after a look at the deliveries newer than the newest
    # that scan has seen (``scan_top_id``; delivery ids grow with time).
    resume_cursor = models.CharField(max_length=200, blank=True)
    # Within the page at ``resume_cursor``, deliveries with this id or more are done.
    resume_below_id = models.BigIntegerField(null=True, blank=True)
    scan_top_id = models.BigIntegerField(null=True, blank=True)
    scan_top = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["scope", "owner", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "owner", "hook_id"], name="webhook_hook_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.scope} hook {self.hook_id} of {self.owner}"


class WebhookRedelivery(models.Model):
    """Our requests that GitHub redeliver one event (by its guid) to us."""

    guid = models.CharField(max_length=64)
    event = models.CharField(max_length=50, blank=True)
    # GitHub's id of the failed delivery we asked it to attempt again.
    github_delivery_id = models.BigIntegerField()
    attempts = models.PositiveSmallIntegerField(default=0)
    first_requested_at = models.DateTimeField(default=timezone.now)
    last_requested_at = models.DateTimeField(default=timezone.now)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-last_requested_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["guid"], name="webhook_redelivery_guid_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"redelivery of {self.guid} ({self.attempts} attempts)"


class WorkflowJobQuerySet(models.QuerySet["WorkflowJob"]):
    def for_runner(self, name: str) -> WorkflowJobQuerySet:
        return self.filter(runner_name=name)


class WorkflowJob(models.Model):
    """A GitHub Actions job as the newest webhook (or poll) described it."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        WAITING = "waiting"
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"

    github_id = models.BigIntegerField(unique=True)
    run_id = models.BigIntegerField(db_index=True)
    name = models.CharField(max_length=200)
    workflow_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    conclusion = models.CharField(max_length=20, blank=True)
    labels = models.JSONField(default=list)
    runner_name = models.CharField(max_length=200, blank=True)
    html_url = models.URLField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = WorkflowJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # A runner's recent jobs on its detail page.
            models.Index(
                fields=["runner_name", "-created_at"], name="job_runner_recent_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.github_id} ({self.status})"

    @staticmethod
    def fields_from_payload(job: dict[str, Any]) -> dict[str, Any]:
        """Model fields from a ``workflow_job`` object of a webhook payload."""
        return {
            "run_id": job["run_id"],
            "name": job.get("name") or "",
            "workflow_name": job.get("workflow_name") or "",
            "status": job["status"],
            "conclusion": job.get("conclusion") or "",
            "labels": list(job.get("labels") or []),
            "runner_name": job.get("runner_name") or "",
            "html_url": job.get("html_url") or "",
            "created_at": job.get("created_at") or job.get("started_at"),
            "started_at": job.get("started_at"),
            "completed_at": job.get("completed_at"),
        }


# Environments and their runner pools ------------------------------------------------


def validate_pattern(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(f"not a regular expression: {exc}") from None


class Environment(models.Model):
    """A deploy target (production, staging…): repository, workflow and runner pool."""

    class Policy(models.TextChoices):
        QUEUE = "queue", "queue behind the running deploy"
        REJECT = "reject", "refuse while one is queued or running"

    # Also the GitHub environment's name (deploy jobs declare ``environment:``); a
    # slug is always a valid one (see controlplane.names), and the gateway checks.
    name = models.SlugField(max_length=100, unique=True)
    repository = models.CharField(max_length=200, validators=[validate_repository])
    workflow_file = models.CharField(
        max_length=200, default="deploy.yml", validators=[validate_workflow_file]
    )
    default_ref = models.CharField(max_length=255, default="main")
    # Seconds a dispatched job may wait for its runner before the next one is tried.
    pickup_timeout = models.PositiveIntegerField(default=120)
    # Seconds a deploy may wait for a healthy runner (or its secrets) before failing.
    gate_timeout = models.PositiveIntegerField(default=300)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    # Names of secrets the workflow needs, looked up in the repository and in the
    # GitHub environment of the same name before every dispatch.
    required_secrets = models.JSONField(
        default=list, blank=True, validators=[validate_secret_names]
    )
    policy = models.CharField(
        max_length=10, choices=Policy.choices, default=Policy.QUEUE
    )
    change_ticket_pattern = models.CharField(
        max_length=200, blank=True, validators=[validate_pattern]
    )
    paused = models.BooleanField(default=False)
    paused_reason = models.CharField(max_length=500, blank=True)
    # Hold deploys while a secret this environment requires is overdue for rotation
    # (missing required secrets always hold them).
    block_on_overdue_secrets = models.BooleanField(default=False)
    runners = models.ManyToManyField(
        "runners.Runner",
        through="EnvironmentRunner",
        related_name="environments",
        blank=True,
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1), name="environment_attempts_min"
            ),
            models.CheckConstraint(
                condition=Q(policy__in=["queue", "reject"]),
                name="environment_policy_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def pool(self) -> list[EnvironmentRunner]:
        """The runner pool in order: the primary first, then the secondaries."""
        return list(self.pool_entries.select_related("runner").order_by("position"))

    def set_pool(self, runners: list[Any]) -> None:
        """Replace the pool with ``runners`` in this order (position 0 = primary)."""
        self.pool_entries.all().delete()
        EnvironmentRunner.objects.bulk_create(
            EnvironmentRunner(environment=self, runner=runner, position=position)
            for position, runner in enumerate(runners)
        )

    def freeze_at(self, now: datetime) -> FreezeWindow | None:
        """The freeze window in force at ``now``, if any."""
        return next((w for w in self.freeze_windows.all() if w.covers(now)), None)

    def frozen_until(self, now: datetime) -> datetime | None:
        """When the freeze in force at ``now`` ends; None when there is none.

        Windows that overlap or follow back to back count as one freeze. The search
        stops a year ahead: weekly windows may between them cover the whole week.
        """
        windows = list(self.freeze_windows.all())
        horizon = now + FREEZE_HORIZON
        until = now
        while until < horizon:
            ends = [end for w in windows if (end := w.current_end(until)) is not None]
            if not ends:
                break
            until = max(ends)
        return until if until > now else None

    def ticket_matches(self, ticket: str) -> bool:
        if not self.change_ticket_pattern:
            return True
        return re.fullmatch(self.change_ticket_pattern, ticket) is not None


class EnvironmentRunner(models.Model):
    """One place in an environment's runner pool (position 0 is the primary)."""

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="pool_entries"
    )
    # PROTECT: a runner in a pool is removed from the pool first, deliberately.
    runner = models.ForeignKey(
        "runners.Runner", on_delete=models.PROTECT, related_name="pool_entries"
    )
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["environment", "position", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "position"], name="pool_position_uniq"
            ),
            models.UniqueConstraint(
                fields=["environment", "runner"], name="pool_runner_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.environment_id}#{self.position}: {self.runner_id}"


# How far ahead Environment.frozen_until follows windows that continue one another.
FREEZE_HORIZON = timedelta(days=366)
MAX_FREEZE_MINUTES = 7 * 24 * 60


class FreezeWindow(models.Model):
    """A period when deploys to an environment are refused unless an admin breaks
    glass: one-off (``starts_at``..``ends_at``) or weekly (UTC ``weekday`` and
    ``start_time`` for ``duration_minutes``, which may run past midnight)."""

    class Kind(models.TextChoices):
        ONE_OFF = "one_off", "one-off"
        WEEKLY = "weekly", "every week"

    # The fields each kind uses; the other kind's stay empty.
    KIND_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        Kind.ONE_OFF: ("starts_at", "ends_at"),
        Kind.WEEKLY: ("weekday", "start_time", "duration_minutes"),
    }

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="freeze_windows"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    reason = models.CharField(max_length=200)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    # Monday is 0, as datetime.weekday() counts.
    weekday = models.PositiveSmallIntegerField(null=True, blank=True)
    start_time = models.TimeField(null=True, blank=True)
    duration_minutes = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["environment", "kind", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    # A comparison with NULL passes a CHECK: hence the isnull terms.
                    Q(
                        kind="one_off",
                        starts_at__isnull=False,
                        ends_at__isnull=False,
                        ends_at__gt=models.F("starts_at"),
                    )
                    | Q(
                        kind="weekly",
                        weekday__isnull=False,
                        weekday__lte=6,
                        start_time__isnull=False,
                        duration_minutes__gte=1,
                        duration_minutes__lte=MAX_FREEZE_MINUTES,
                    )
                ),
                name="freeze_window_shape",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.environment_id} frozen: {self.reason}"

    def clean(self) -> None:
        """The admin site's form check: the shape, each error on its field."""
        errors = self.shape_errors()
        if errors:
            raise ValidationError(errors)

    def shape_errors(self) -> dict[str, str]:
        """What is wrong with the window's shape, by field; empty when nothing is.

        Stricter than ``freeze_window_shape``: a CHECK constraint lets a NULL
        through (a weekly window without a weekday, a one-off without an end), and
        it ignores the other kind's fields."""
        if self.kind not in self.Kind.values:
            return {}  # the kind field's own validation says so
        kind = self.Kind(self.kind)
        errors: dict[str, str] = {}
        for other, names in self.KIND_FIELDS.items():
            for name in names:
                given = getattr(self, name) is not None
                if other != kind and given:
                    errors[name] = f"must be empty when kind is {kind.value}"
                elif other == kind and not given:
                    errors[name] = f"required when kind is {kind.value}"
        if errors:
            return errors
        if kind == self.Kind.ONE_OFF:
            assert self.starts_at is not None and self.ends_at is not None
            if self.ends_at <= self.starts_at:
                errors["ends_at"] = "must be after starts_at"
            return errors
        assert self.weekday is not None and self.duration_minutes is not None
        if not 0 <= self.weekday <= 6:
            errors["weekday"] = "0 (Monday) to 6 (Sunday)"
        if not 1 <= self.duration_minutes <= MAX_FREEZE_MINUTES:
            errors["duration_minutes"] = f"1 to {MAX_FREEZE_MINUTES} minutes (a week)"
        return errors

    def audit_detail(self) -> dict[str, str]:
        """What the audit rows of a change to the window say about it."""
        return {
            "environment": self.environment.name,
            "reason": self.reason,
            "schedule": self.schedule,
        }

    def covers(self, now: datetime) -> bool:
        """Whether deploys are frozen at ``now``."""
        return self.current_end(now) is not None

    def current_end(self, now: datetime) -> datetime | None:
        """When the occurrence in force at ``now`` ends; None when not in force."""
        if self.kind == self.Kind.ONE_OFF:
            assert self.starts_at is not None and self.ends_at is not None
            return self.ends_at if self.starts_at <= now < self.ends_at else None
        assert self.weekday is not None and self.start_time is not None
        now = now.astimezone(UTC)
        # The window's most recent start on or before now, then whether we are
        # still inside it (a window may cross midnight or the week's end).
        days_back = (now.weekday() - self.weekday) % 7
        start = datetime.combine(
            (now - timedelta(days=days_back)).date(), self.start_time, tzinfo=UTC
        )
        if start > now:
            start -= timedelta(days=7)
        end = start + timedelta(minutes=self.duration_minutes or 0)
        return end if now < end else None

    @property
    def schedule(self) -> str:
        """When the window applies, in words (UTC)."""
        if self.kind == self.Kind.ONE_OFF:
            assert self.starts_at is not None and self.ends_at is not None
            return (
                f"one-off, {self.starts_at.astimezone(UTC):%Y-%m-%d %H:%M} – "
                f"{self.ends_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
            )
        assert self.weekday is not None and self.start_time is not None
        hours, minutes = divmod(self.duration_minutes or 0, 60)
        length = [f"{hours} h"] if hours else []
        if minutes or not hours:
            length.append(f"{minutes} min")
        return (
            f"weekly, {calendar.day_name[self.weekday]}s from "
            f"{self.start_time:%H:%M} UTC for {' '.join(length)}"
        )


# Deploy runs, attempts and their timeline ---------------------------------------------


class DeployRunQuerySet(models.QuerySet["DeployRun"]):
    def active(self) -> DeployRunQuerySet:
        return self.filter(state__in=DeployRun.ACTIVE_STATES)

    def queued(self) -> DeployRunQuerySet:
        return self.filter(state=DeployRun.State.QUEUED)

    def unfinished(self) -> DeployRunQuerySet:
        return self.exclude(state__in=DeployRun.FINAL_STATES)

    def due(self, now: Any) -> DeployRunQuerySet:
        """Runs whose deadline for another look has passed (the reconciler's scan)."""
        return self.filter(next_check_at__lte=now)


class DeployRun(models.Model):
    """One requested deploy of a ref to an environment, through its attempts."""

    class State(models.TextChoices):
        QUEUED = "queued"
        GATING = "gating"
        DISPATCHING = "dispatching"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Reason(models.TextChoices):
        NONE = "", "none"
        DEPLOY_FAILED = "deploy_failed", "a deploy step failed"
        NO_HEALTHY_RUNNER = "no_healthy_runner", "no healthy runner"
        MISSING_SECRETS = "missing_secrets", "required secrets missing"
        MAX_ATTEMPTS = "max_attempts", "every attempt failed over"
        DISPATCH_REJECTED = "dispatch_rejected", "GitHub refused the dispatch"
        WRONG_RUNNER = "wrong_runner", "the job ran on another runner"
        CANCELLED = "cancelled", "cancelled by a person"
        FROZEN = "frozen", "the environment froze before the deploy started"

    ACTIVE_STATES = (State.GATING, State.DISPATCHING, State.RUNNING)
    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    environment = models.ForeignKey(
        Environment, on_delete=models.PROTECT, related_name="deploys"
    )
    ref = models.CharField(max_length=255)
    sha = models.CharField(max_length=40, blank=True)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    requester_name = models.CharField(max_length=150, blank=True)
    change_ticket = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    reason = models.CharField(
        max_length=30, choices=Reason.choices, blank=True, default=Reason.NONE
    )
    message = models.CharField(max_length=500, blank=True)
    # When the engine next has to look at this run (pickup timeout, poll, gate
    # retry); None when nothing is pending. The reconciler scans it.
    next_check_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    gate_started_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DeployRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # At most one active deploy per environment: the database decides, so
            # two workers promoting queued runs at once cannot both win.
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(state__in=["gating", "dispatching", "running"]),
                name="deploy_one_active_per_env",
            ),
            models.CheckConstraint(
                condition=Q(
                    state__in=[
                        "queued",
                        "gating",
                        "dispatching",
                        "running",
                        "succeeded",
                        "failed",
                        "cancelled",
                    ]
                ),
                name="deploy_state_valid",
            ),
        ]
        indexes = [
            # The reconciler: DeployRun.objects.due(now), runs with a deadline.
            models.Index(
                fields=["next_check_at"],
                name="deploy_next_check_idx",
                condition=Q(next_check_at__isnull=False),
            ),
            # The next queued run of an environment, oldest first.
            models.Index(
                fields=["environment", "created_at"],
                name="deploy_queued_idx",
                condition=Q(state="queued"),
            ),
            # The deploys list filtered by environment, newest first.
            models.Index(
                fields=["environment", "-created_at"], name="deploy_env_recent_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"deploy #{self.pk} of {self.ref} to {self.environment_id}"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES

    @property
    def runbook_slug(self) -> str:
        return DEPLOY_RUNBOOKS.get(self.reason, "")

    def current_attempt(self) -> DeployAttempt | None:
        return self.attempts.select_related("runner").order_by("-number").first()

    def cancel(self, actor: audit.Actor, note: str = "") -> bool:
        """Cancel the deploy (and, through the engine, its GitHub run); False when
        it had already finished."""
        from deploys import engine
        from deploys.tasks import advance_run

        now = timezone.now()
        with transaction.atomic():
            moved = (
                DeployRun.objects.filter(pk=self.pk)
                .exclude(state__in=self.FINAL_STATES)
                .update(
                    state=self.State.CANCELLED,
                    reason=self.Reason.CANCELLED,
                    message=(note or "cancelled")[:500],
                    finished_at=now,
                    # The engine comes back at once to cancel the GitHub run.
                    next_check_at=now,
                )
            )
            if not moved:
                return False
            self.attempts.exclude(state__in=DeployAttempt.FINAL_STATES).filter(
                cancel_requested_at__isnull=True
            ).update(cancel_requested_at=now)
            name = _actor_name(actor)
            DeployEvent.objects.create(
                run=self,
                kind=DeployEvent.Kind.CANCELLED,
                message=f"cancelled by {name}" + (f": {note}" if note else ""),
                detail={"by": name},
                created_at=now,
            )
            audit.record(actor, "deploy.cancel", self, note=note)
            engine.wake_next_queued(self.environment_id)
            transaction.on_commit(lambda: advance_run.delay(self.pk))
        self.refresh_from_db()
        return True


def _actor_name(actor: audit.Actor) -> str:
    if isinstance(actor, str):
        return actor
    if actor is not None and actor.is_authenticated:
        return str(actor.get_username())
    return "anonymous"


DEPLOY_RUNBOOKS: dict[str, str] = {
    DeployRun.Reason.NO_HEALTHY_RUNNER: "deploy-no-healthy-runner",
    DeployRun.Reason.MISSING_SECRETS: "secret-missing",
    DeployRun.Reason.MAX_ATTEMPTS: "deploy-failed-over",
    DeployRun.Reason.DEPLOY_FAILED: "deploy-failed",
    DeployRun.Reason.DISPATCH_REJECTED: "deploy-dispatch-rejected",
    DeployRun.Reason.WRONG_RUNNER: "deploy-wrong-runner",
    DeployRun.Reason.FROZEN: "deploy-frozen",
}


def new_correlation_token() -> str:
    # Short enough for a run-name, random enough never to match another run.
    return "dpl-" + secrets.token_hex(12)


# A correlation token inside a run's name (the reference workflows' run-name).
CORRELATION_TOKEN = re.compile(r"\bdpl-[0-9a-f]{24}\b")


class DeployAttempt(models.Model):
    """One dispatch of a deploy run onto one runner."""

    class State(models.TextChoices):
        PENDING = "pending"  # created, not dispatched yet
        DISPATCHED = "dispatched"  # GitHub accepted it; waiting for a runner
        RUNNING = "running"  # the job is in progress on a runner
        CANCELLING = "cancelling"  # failing over: the old run is being cancelled
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class FailoverReason(models.TextChoices):
        NONE = "", "none"
        PICKUP_TIMEOUT = "pickup_timeout", "not picked up in time"
        RUNNER_UNHEALTHY = "runner_unhealthy", "the runner turned unhealthy"
        INFRASTRUCTURE = "infrastructure_failure", "runner lost or job cancelled"
        DISPATCH_LOST = "dispatch_lost", "the dispatch left no run on GitHub"

    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    run = models.ForeignKey(
        DeployRun, on_delete=models.CASCADE, related_name="attempts"
    )
    number = models.PositiveSmallIntegerField()
    runner = models.ForeignKey(
        "runners.Runner", on_delete=models.PROTECT, related_name="deploy_attempts"
    )
    # The workflow's run-name carries it, so a run can be found after a crash.
    token = models.CharField(max_length=64, unique=True, default=new_correlation_token)
    state = models.CharField(
        max_length=12, choices=State.choices, default=State.PENDING
    )
    github_run_id = models.BigIntegerField(null=True, blank=True)
    html_url = models.URLField(max_length=500, blank=True)
    # The runner GitHub reports the job on (it must be the intended one).
    job_runner_name = models.CharField(max_length=200, blank=True)
    conclusion = models.CharField(max_length=20, blank=True)
    failover_reason = models.CharField(
        max_length=30, choices=FailoverReason.choices, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Set by the one worker allowed to send this attempt's dispatch.
    dispatch_claimed_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    picked_up_at = models.DateTimeField(null=True, blank=True)
    # Cancelling the GitHub run: decided, cancel sent, force-cancel sent.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_sent_at = models.DateTimeField(null=True, blank=True)
    force_cancelled_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "number", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "number"], name="attempt_number_uniq"
            ),
        ]
        indexes = [
            # Webhooks find the attempt of a workflow run by its GitHub run id.
            models.Index(
                fields=["github_run_id"],
                name="attempt_github_run_idx",
                condition=Q(github_run_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of run {self.run_id}"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES


class DeployEvent(models.Model):
    """One entry of a deploy's timeline (also its audit trail)."""

    class Kind(models.TextChoices):
        REQUESTED = "requested"
        BREAK_GLASS = "break_glass"
        GATING = "gating"
        GATE_WAITING = "gate_waiting"
        GATE_PASSED = "gate_passed"
        DISPATCHED = "dispatched"
        DISPATCH_RECOVERED = "dispatch_recovered"
        DISPATCH_RETRY = "dispatch_retry"
        PICKED_UP = "picked_up"
        FAILOVER = "failover"
        CANCEL_SENT = "cancel_sent"
        FORCE_CANCEL_SENT = "force_cancel_sent"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    run = models.ForeignKey(DeployRun, on_delete=models.CASCADE, related_name="events")
    attempt = models.ForeignKey(
        DeployAttempt,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="events",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message = models.CharField(max_length=500, blank=True)
    # Structured facts: the gate's runners considered and why each was passed over,
    # GitHub run ids, conclusions. Never a secret.
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            # A run's timeline in order.
            models.Index(fields=["run", "created_at"], name="deploy_event_run_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}: {self.kind}"


# Secret rotation schedules live in their own module; imported here so they belong to
# this app's models.
class IdempotencyRecord(models.Model):
    """An ``Idempotency-Key`` a caller sent with a deploy request.

    The key is reserved (committed) before the deploy is created, so a second
    request with it while the first is in flight finds it and is told so (409);
    the run and the first response are stored with it in the transaction that
    creates the run, so a replay answers exactly what the first request got.
    A refused request releases its key. Records are pruned after
    ``IDEMPOTENCY_KEY_RETENTION``.
    """

    # A key means nothing across callers: "user:<pk>".
    caller = models.CharField(max_length=150)
    key = models.CharField(max_length=200)
    # SHA-256 of the request body the key was first used with.
    fingerprint = models.CharField(max_length=64)
    # When the key was reserved (or an abandoned reservation taken over).
    reserved_at = models.DateTimeField()
    # Null while the first request is in flight.
    run = models.ForeignKey(
        DeployRun, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # The first response's body, for API requests; the UI replays by the run.
    response = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["caller", "key"], name="idempotency_record_caller_key_uniq"
            ),
        ]
        indexes = [
            models.Index(fields=["reserved_at"], name="idempotency_reserved_idx")
        ]

    def __str__(self) -> str:
        return f"{self.caller} {self.key}"
