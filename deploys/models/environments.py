"""Deploy targets: environments, their runner pools and freeze windows."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from controlplane.names import (
    validate_environment_name,
    validate_repository,
    validate_secret_names,
    validate_workflow_file,
)
from deploys.models.canary_fields import CanaryFields
from deploys.models.change_tickets import ChangeTicketFields
from deploys.models.rules_fields import DeployRulesFields
from deploys.models.signoff_rules import SignOffRules
from runners import name_labels
from runners.eligibility import SignalPolicy as SignalPolicy
from runners.eligibility import Verdict, judge, trust_text

if TYPE_CHECKING:
    from runners.models import Runner


def validate_pattern(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(f"not a regular expression: {exc}") from None


class Environment(
    DeployRulesFields, ChangeTicketFields, SignOffRules, CanaryFields, models.Model
):
    """A deploy target (production, staging…): repository, workflow and runner pool."""

    class Policy(models.TextChoices):
        QUEUE = "queue", "queue behind the running deploy"
        REJECT = "reject", "refuse while one is queued or running"

    # A slug is always a valid GitHub environment name (see controlplane.names).
    name = models.SlugField(max_length=100, unique=True)
    # The GitHub environment the deploy job declares (``environment:``), passed as
    # the dispatch input ``environment``; blank means the same as ``name``.
    github_environment = models.CharField(
        max_length=255, blank=True, validators=[validate_environment_name]
    )
    repository = models.CharField(max_length=200, validators=[validate_repository])
    workflow_file = models.CharField(
        max_length=200, default="deploy.yml", validators=[validate_workflow_file]
    )
    default_ref = models.CharField(max_length=255, default="main")
    # Seconds a dispatched job may wait for its runner before the next one is tried.
    pickup_timeout = models.PositiveIntegerField(default=120)
    # Seconds a deploy may wait for a healthy runner (or its secrets) before failing.
    gate_timeout = models.PositiveIntegerField(default=300)
    # Seconds the gate waits for the runner it prefers while that runner is busy with
    # another job, before it takes the next idle healthy runner (0: never wait).
    busy_wait = models.PositiveIntegerField(default=120)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    # Seconds a dispatched job may wait on the GitHub environment's protection rules
    # (required reviewers, a wait timer) before the deploy fails; never a failover.
    approval_timeout = models.PositiveIntegerField(default=3600)
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
    # Production: the deploy form asks for a confirmation naming the environment,
    # the ref and the runner before it requests a deploy here.
    production = models.BooleanField(default=False)
    paused = models.BooleanField(default=False)
    paused_reason = models.CharField(max_length=500, blank=True)
    # Who paused it and when (set by the pause action; blank for older pauses).
    paused_by = models.CharField(max_length=150, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    # Hold deploys while a secret this environment requires is overdue for rotation
    # (missing required secrets always hold them).
    block_on_overdue_secrets = models.BooleanField(default=False)
    # Which signals must be fresh and good for a pool runner to take a deploy
    # (GitHub's status always must; see deploys.eligibility).
    heartbeat_policy = models.CharField(
        max_length=10, choices=SignalPolicy.choices, default=SignalPolicy.REQUIRED
    )
    exporter_policy = models.CharField(
        max_length=10, choices=SignalPolicy.choices, default=SignalPolicy.REQUIRED
    )
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
            models.CheckConstraint(
                condition=Q(heartbeat_policy__in=SignalPolicy.values)
                & Q(exporter_policy__in=SignalPolicy.values),
                name="environment_signal_policy_valid",
            ),
            # The canary's policy (CanaryFields) is a signal policy like the others:
            # a raw UPDATE or a bad data migration must not leave a value that
            # eligibility would not know how to judge.
            models.CheckConstraint(
                condition=Q(canary_policy__in=SignalPolicy.values),
                name="environment_canary_policy_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def pool(self) -> list[EnvironmentRunner]:
        """The runner pool in order: the primary first, then the secondaries."""
        return list(self.pool_entries.select_related("runner").order_by("position"))

    def pick_runner(
        self,
        tried: Mapping[int, Sequence[str]] | None = None,
        pool: Sequence[EnvironmentRunner] | None = None,
    ) -> tuple[Runner | None, list[PoolChoice]]:
        """The runner a deploy goes to now, and every pool runner with why it is
        passed over: the gate, the deploy form's preview and the API all ask this.

        Pool order, healthy and not drained. ``tried`` maps a runner's pk to the
        run's attempts on it: a tried runner is passed over while an untried one is
        eligible (a failover goes to the next runner), and chosen again only when
        every eligible runner has been tried. ``pool`` is the pool if already loaded.
        """
        tried = tried or {}
        entries = self.pool() if pool is None else pool
        now = timezone.now()
        verdicts = [self.judge(entry.runner, now) for entry in entries]
        health = [verdict.blocking for verdict in verdicts]
        eligible = [
            (len(tried.get(entry.runner_id, ())), entry.position, entry.runner)
            for entry, why in zip(entries, health, strict=True)
            if not why
        ]
        chosen = min(eligible, key=lambda e: (e[0], e[1]))[2] if eligible else None
        choices: list[PoolChoice] = []
        for entry, why, verdict in zip(entries, health, verdicts, strict=True):
            picked = chosen is not None and entry.runner_id == chosen.pk
            passed_over = why
            if not picked and not why and entry.runner_id in tried:
                passed_over = ["already tried: " + ", ".join(tried[entry.runner_id])]
            choices.append(
                PoolChoice(
                    entry.position,
                    entry.runner,
                    why,
                    passed_over,
                    picked,
                    notes=verdict.notes,
                    trusted=verdict.trusted,
                )
            )
        return chosen, choices

    def judge(self, runner: Runner, now: datetime) -> Verdict:
        """Whether ``runner`` may take a deploy here at ``now`` under this
        environment's signal policy, with every reason (runners.eligibility)."""
        return judge(
            runner,
            now,
            heartbeat=self.heartbeat_policy,
            exporter=self.exporter_policy,
            canary=self.canary_policy,
            scope=self.name,
        )

    @property
    def signal_policy(self) -> str:
        """The policy in words, for pages and the decision list."""
        return (
            f"GitHub status required, heartbeat {self.heartbeat_policy}, "
            f"exporter {self.exporter_policy}, canary {self.canary_policy}"
        )

    def set_pool(self, runners: list[Any]) -> None:
        """Replace the pool with ``runners`` in this order (position 0 = primary)."""
        self.pool_entries.all().delete()
        EnvironmentRunner.objects.bulk_create(
            EnvironmentRunner(environment=self, runner=runner, position=position)
            for position, runner in enumerate(runners)
        )
        name_labels.flag()

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

    @property
    def github_environment_name(self) -> str:
        """The GitHub environment deploy jobs declare."""
        return self.github_environment or self.name

    def ticket_matches(self, ticket: str) -> bool:
        if not self.change_ticket_pattern:
            return True
        return re.fullmatch(self.change_ticket_pattern, ticket) is not None


@dataclass(frozen=True)
class PoolChoice:
    """One runner of a pool as the gate sees it now."""

    position: int
    runner: Runner
    # Why the runner cannot take a deploy at all (its health, a drain).
    ineligibility_reasons: list[str]
    # Why the gate passes it over: the above, or that this run already tried it.
    passed_over: list[str]
    chosen: bool
    # What is wrong but does not keep it out (advisory signals, an override).
    notes: list[str] = field(default_factory=list)
    # A trust override counted for it.
    trusted: bool = False

    @property
    def eligible(self) -> bool:
        return not self.ineligibility_reasons

    def decision_detail(self) -> dict[str, Any]:
        """What the gate's decision list adds about policy and overrides (nothing
        when neither applies, so strict decisions read as they always did)."""
        extra: dict[str, Any] = {}
        if self.notes:
            extra["notes"] = list(self.notes)
        if self.trusted:
            extra["trusted"] = trust_text(self.runner)
        return extra


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
