"""Secret rotation schedules and their rotation history (never a secret value).

The tables keep the names they had when these models lived in the deploys app, so
moving the models to this app moved no data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Case, IntegerField, Q, Value, When
from django.utils import timezone

from controlplane import names


class Status(models.TextChoices):
    # Labels in the lower case of the badges they fill.
    OK = "ok", "ok"
    DUE_SOON = "due_soon", "due soon"
    OVERDUE = "overdue", "overdue"
    MISSING = "missing", "missing"
    UNKNOWN = "unknown", "unknown (never checked)"


# Lower is more urgent: the secrets page lists overdue first, then missing, then
# due soon; never-checked ones before the healthy ones (unknown is not healthy).
URGENCY = {
    Status.OVERDUE: 0,
    Status.MISSING: 1,
    Status.DUE_SOON: 2,
    Status.UNKNOWN: 3,
    Status.OK: 4,
}


def scope_problem(scope: str) -> str | None:
    """Why a schedule cannot have this scope in this deployment, or None."""
    if scope == SecretRotationSchedule.Scope.ORGANIZATION and not (
        settings.GITHUB_ORGANIZATION
    ):
        return (
            "organization secrets need the GITHUB_ORGANIZATION setting, which is "
            "not set"
        )
    return None


class ScheduleQuerySet(models.QuerySet["SecretRotationSchedule"]):
    def with_status(self, now: datetime) -> ScheduleQuerySet:
        """Annotate ``status`` and ``urgency`` as of ``now``, computed in SQL so
        lists can filter and sort on them (``SecretRotationSchedule.status_at`` is
        the same rule in Python)."""
        status = Case(
            When(last_checked_at__isnull=True, then=Value(Status.UNKNOWN.value)),
            When(present=False, then=Value(Status.MISSING.value)),
            When(next_due__isnull=True, then=Value(Status.UNKNOWN.value)),
            When(next_due__lte=now, then=Value(Status.OVERDUE.value)),
            When(warn_at__lte=now, then=Value(Status.DUE_SOON.value)),
            default=Value(Status.OK.value),
            output_field=models.CharField(),
        )
        urgency = Case(
            *(When(status=value, then=Value(rank)) for value, rank in URGENCY.items()),
            output_field=IntegerField(),
        )
        return self.annotate(status=status).annotate(urgency=urgency)

    def by_urgency(self, now: datetime) -> ScheduleQuerySet:
        return self.with_status(now).order_by(  # type: ignore[misc]
            "urgency", "next_due", "name", "pk"
        )

    def required_by(self, environment: Any) -> ScheduleQuerySet:
        return self.filter(required_by=environment)


class SecretRotationSchedule(models.Model):
    """How often one GitHub Actions secret must be rotated, and when it last was."""

    class Scope(models.TextChoices):
        REPOSITORY = "repository"
        ENVIRONMENT = "environment"
        ORGANIZATION = "organization"

    name = models.CharField(max_length=100, validators=[names.validate_secret_name])
    scope = models.CharField(
        max_length=20, choices=Scope.choices, default=Scope.REPOSITORY
    )
    # owner/name; blank means the configured GITHUB_REPOSITORY (or, for an
    # environment secret, the environment's repository).
    repository = models.CharField(
        max_length=200, blank=True, validators=[names.validate_repository]
    )
    # The GitHub environment of an environment-scoped secret (same name as ours).
    environment = models.ForeignKey(
        "deploys.Environment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="secret_schedules",
    )
    interval_days = models.PositiveIntegerField(default=90)
    warning_days = models.PositiveIntegerField(default=14)
    owner = models.CharField(max_length=200, blank=True)
    notes = models.TextField(blank=True)
    required_by = models.ManyToManyField(
        "deploys.Environment", related_name="required_secret_schedules", blank=True
    )
    # From GitHub's ``updated_at`` or our own rotations, whichever is newer.
    last_rotated_at = models.DateTimeField(null=True, blank=True)
    # Derived from last_rotated_at and the intervals in save(), so SQL can sort on
    # them; they change only when those inputs do, so they are never stale.
    next_due = models.DateTimeField(null=True, blank=True)
    warn_at = models.DateTimeField(null=True, blank=True)
    # The newest audit's findings: None until the first audit.
    present = models.BooleanField(null=True, blank=True)
    github_updated_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        db_table = "deploys_secretrotationschedule"
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["name", "scope", "repository", "environment"],
                name="secret_schedule_target_uniq",
            ),
            # NULLs are distinct in a unique index: repository and organization
            # secrets (no environment) need their own.
            models.UniqueConstraint(
                fields=["name", "scope", "repository"],
                condition=Q(environment__isnull=True),
                name="secret_schedule_scope_uniq",
            ),
            models.CheckConstraint(
                condition=Q(scope="environment", environment__isnull=False)
                | ~Q(scope="environment"),
                name="secret_schedule_environment_scope",
            ),
            models.CheckConstraint(
                condition=Q(interval_days__gte=1), name="secret_schedule_interval_min"
            ),
        ]
        indexes = [
            # The secrets page and the metrics sort and bucket by due date.
            models.Index(fields=["next_due"], name="secret_schedule_due_idx")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.target_label})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.name = self.name.upper()  # GitHub secret names are case-insensitive
        self.compute_due()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "next_due", "warn_at"}
        super().save(*args, **kwargs)

    @property
    def target_label(self) -> str:
        if self.scope == self.Scope.ORGANIZATION:
            return f"organization {settings.GITHUB_ORGANIZATION or '?'}"
        if self.scope == self.Scope.ENVIRONMENT and self.environment is not None:
            return f"environment {self.environment.name}"
        return f"repository {self.target_repository}"

    @property
    def target_repository(self) -> str:
        if self.repository:
            return self.repository
        if self.environment is not None:
            return self.environment.repository
        return str(settings.GITHUB_REPOSITORY)

    @property
    def github_environment(self) -> str | None:
        if self.scope == self.Scope.ENVIRONMENT and self.environment is not None:
            return self.environment.name
        return None

    def clean(self) -> None:
        if self.scope == self.Scope.ENVIRONMENT and self.environment_id is None:
            raise ValidationError(
                {"environment": "an environment secret needs its environment"}
            )
        problem = scope_problem(self.scope)
        if problem is not None:
            raise ValidationError({"scope": problem})

    def target_problem(self) -> dict[str, str] | None:
        """Why GitHub cannot be asked about this secret, by field, or None: the
        setting its scope needs is missing, or a row that predates validation
        holds a name outside GitHub's grammar."""
        problem = scope_problem(self.scope)
        if problem is not None:
            return {"scope": problem}
        problem = names.problem(names.Kind.REPOSITORY, self.target_repository)
        if problem is not None:
            return {"repository": problem}
        environment = self.github_environment
        if environment is not None:
            problem = names.problem(names.Kind.ENVIRONMENT, environment)
            if problem is not None:
                return {"environment": problem}
        return None

    def compute_due(self) -> None:
        if self.last_rotated_at is None:
            self.next_due = self.warn_at = None
            return
        self.next_due = self.last_rotated_at + timedelta(days=self.interval_days)
        self.warn_at = self.next_due - timedelta(days=self.warning_days)

    def status_at(self, now: datetime) -> Status:
        """The status as of ``now``: the same rule as ``with_status`` in SQL."""
        if self.last_checked_at is None:
            return Status.UNKNOWN
        if self.present is False:
            return Status.MISSING
        if self.next_due is None or self.warn_at is None:
            return Status.UNKNOWN
        if self.next_due <= now:
            return Status.OVERDUE
        if self.warn_at <= now:
            return Status.DUE_SOON
        return Status.OK

    def days_until_due(self, now: datetime) -> float | None:
        if self.next_due is None:
            return None
        return (self.next_due - now).total_seconds() / 86400


class SecretRotation(models.Model):
    """One rotation of a scheduled secret: who, when, how. Never the value."""

    class Source(models.TextChoices):
        CONTROL_PLANE = "control_plane", "rotated here"
        EXTERNAL = "external", "changed outside the control plane"

    schedule = models.ForeignKey(
        SecretRotationSchedule, on_delete=models.CASCADE, related_name="rotations"
    )
    rotated_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=20, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    actor_name = models.CharField(max_length=150, blank=True)
    # The id of the GitHub public key the value was sealed with (ours only).
    key_id = models.CharField(max_length=100, blank=True)
    github_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "deploys_secretrotation"
        ordering = ["-rotated_at", "-pk"]
        indexes = [
            # A schedule's rotation history, newest first, on its detail page.
            models.Index(
                fields=["schedule", "-rotated_at"], name="secret_rotation_recent_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.schedule.name} rotated {self.rotated_at:%Y-%m-%d %H:%M} UTC"
