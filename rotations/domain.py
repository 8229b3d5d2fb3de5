"""Secret rotation: audit schedules against GitHub, propose schedules for the
secrets GitHub already has, rotate a secret without ever keeping its value.

A secret value exists only inside :func:`rotate` (and the request that calls it):
the gateway seals it with a public key fetched in the same call. Rotation rows and
audit rows record who, when and the sealing key's id, never the value or a hash of it.
"""

from __future__ import annotations

import logging
import secrets as random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.views.debug import SafeExceptionReporterFilter
from django.views.decorators.debug import sensitive_variables

from controlplane import audit
from controlplane.github import (
    GitHubError,
    GitHubNotFound,
    SecretInfo,
    gateway_for,
)
from controlplane.notifications import Kind, notify
from deploys.models import Environment
from rotations.models import SecretRotation, SecretRotationSchedule, Status

log = logging.getLogger(__name__)

Scope = SecretRotationSchedule.Scope
# (scope, repository, GitHub environment or "") names one list of secrets in GitHub.
Target = tuple[str, str, str]

# 32 random bytes, URL-safe base64: 256 bits, no characters that need quoting.
GENERATED_BYTES = 32


class RotationRefused(Exception):
    """GitHub refused or failed the rotation; nothing was recorded as rotated."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SecretReporterFilter(SafeExceptionReporterFilter):
    """Hides sensitive variables and POST parameters even with DEBUG on.

    Django's default filter shows everything when DEBUG is on, so a technical 500
    page of a rotation would show the value typed into the form."""

    def is_active(self, request: HttpRequest | None) -> bool:
        return True


def protect_request(request: HttpRequest) -> None:
    """Mark a request that carries a secret value: every POST parameter is hidden
    from error reports, with DEBUG on or off."""
    request.exception_reporter_filter = SecretReporterFilter()
    request.sensitive_post_parameters = "__ALL__"  # type: ignore[attr-defined]


def generate_value() -> str:
    """A strong random secret value for the "generate" choice of the rotate form."""
    return random.token_urlsafe(GENERATED_BYTES)


def target_of(schedule: SecretRotationSchedule) -> Target:
    return (
        schedule.scope,
        schedule.target_repository,
        schedule.github_environment or "",
    )


def list_target(target: Target) -> list[SecretInfo]:
    scope, repository, environment = target
    return gateway_for(repository).list_secrets(
        scope,  # type: ignore[arg-type]
        environment or None,
    )


def _error_text(exc: GitHubError) -> str:
    # Gateway errors never hold a secret value or a token (see GitHubError).
    return f"{type(exc).__name__}: {exc}"[:500]


# Audit ------------------------------------------------------------------------------


@dataclass
class AuditReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "missing": self.missing,
            "rotated_externally": self.external,
            "failed_targets": self.errors,
        }


def audit_schedules(
    now: datetime | None = None, *, actor: audit.Actor = "beat"
) -> AuditReport:
    """Check every schedule against GitHub's list of secrets.

    1. One list call per target (scope, repository, environment), not per secret.
    2. A secret GitHub no longer has is marked missing.
    3. A newer ``updated_at`` than the one last seen, not explained by a rotation
       made here, is recorded as a rotation made outside the control plane.
    4. ``last_rotated_at`` follows the newest of the two, which moves the due date.

    A target GitHub cannot list leaves its schedules' previous findings as they were,
    with the error noted; the other targets are still checked.
    """
    now = now or timezone.now()
    report = AuditReport()
    groups: dict[Target, list[SecretRotationSchedule]] = defaultdict(list)
    for schedule in SecretRotationSchedule.objects.select_related("environment"):
        groups[target_of(schedule)].append(schedule)
    for target, schedules in groups.items():
        try:
            found = {s.name.upper(): s for s in list_target(target)}
        except GitHubNotFound:
            found = {}  # no such GitHub environment (yet): every secret is missing
        except GitHubError as exc:
            error = _error_text(exc)
            report.errors.append(f"{'/'.join(filter(None, target))}: {error}")
            SecretRotationSchedule.objects.filter(
                pk__in=[s.pk for s in schedules]
            ).update(last_check_error=error)
            continue
        for schedule in schedules:
            report.checked += 1
            info = found.get(schedule.name.upper())
            _apply_finding(schedule, info, now, report, actor)
    audit.record(actor, "secret.audit", **report.as_dict())
    return report


def _apply_finding(
    schedule: SecretRotationSchedule,
    info: SecretInfo | None,
    now: datetime,
    report: AuditReport,
    actor: audit.Actor,
) -> None:
    with transaction.atomic():
        was_missing = schedule.present is False
        schedule.last_checked_at = now
        schedule.last_check_error = ""
        if info is None:
            schedule.present = False
            report.missing.append(schedule.name)
            schedule.save()
            if not was_missing:
                _notify_missing(schedule, now)
            return
        schedule.present = True
        updated = info.updated_at
        seen = schedule.github_updated_at
        if updated is not None and (seen is None or updated > seen):
            ours = (
                schedule.last_rotated_at is not None
                and seen is not None
                and schedule.rotations.filter(
                    source=SecretRotation.Source.CONTROL_PLANE,
                    github_updated_at__isnull=True,
                ).exists()
            )
            if ours:
                # Our own rotation whose GitHub timestamp we could not read back.
                schedule.rotations.filter(
                    source=SecretRotation.Source.CONTROL_PLANE,
                    github_updated_at__isnull=True,
                ).update(github_updated_at=updated)
            elif seen is not None:
                SecretRotation.objects.create(
                    schedule=schedule,
                    rotated_at=updated,
                    source=SecretRotation.Source.EXTERNAL,
                    actor_name="github",
                    github_updated_at=updated,
                )
                report.external.append(schedule.name)
                audit.record(
                    actor,
                    "secret.detect_external_rotation",
                    schedule,
                    github_updated_at=updated.isoformat(),
                )
            # The first sighting is a baseline, not a rotation.
            schedule.github_updated_at = updated
            if schedule.last_rotated_at is None or updated > schedule.last_rotated_at:
                schedule.last_rotated_at = updated
        schedule.save()
        if schedule.status_at(now) == Status.OVERDUE:
            _notify_overdue(schedule)


def _notify_missing(schedule: SecretRotationSchedule, now: datetime) -> None:
    required = ", ".join(e.name for e in schedule.required_by.order_by("name"))
    notify(
        Kind.SECRET_MISSING,
        f"Secret {schedule.name} is missing in GitHub",
        f"{schedule.target_label}: not found by the audit."
        + (f" Deploys to {required} wait for it." if required else ""),
        f"/secrets/{schedule.pk}/",
        # One message per disappearance: the time it was found missing.
        dedupe_key=f"secret-missing:{schedule.pk}:{now:%Y%m%dT%H%M%S}",
        runbook="secret-missing",
        secret=schedule.name,
        owner=schedule.owner,
    )


def _notify_overdue(schedule: SecretRotationSchedule) -> None:
    due = schedule.next_due
    notify(
        Kind.SECRET_OVERDUE,
        f"Secret {schedule.name} is overdue for rotation",
        f"{schedule.target_label}: due {due:%Y-%m-%d}; owner "
        f"{schedule.owner or 'not set'}.",
        f"/secrets/{schedule.pk}/",
        # Once per due date: the daily audit repeats the check, not the message.
        dedupe_key=f"secret-overdue:{schedule.pk}:{due:%Y%m%d}",
        runbook="secret-overdue",
        secret=schedule.name,
        owner=schedule.owner,
    )


# Import -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """A secret GitHub has that no schedule covers yet."""

    name: str
    scope: str
    environment: str
    repository: str
    updated_at: datetime | None

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.environment}:{self.name}"


def import_targets() -> list[tuple[Target, Environment | None]]:
    repo = str(settings.GITHUB_REPOSITORY)
    targets: list[tuple[Target, Environment | None]] = [
        ((Scope.REPOSITORY.value, repo, ""), None)
    ]
    for env in Environment.objects.order_by("name", "pk"):
        targets.append(((Scope.ENVIRONMENT.value, env.repository, env.name), env))
    if settings.GITHUB_ORGANIZATION:
        targets.append(((Scope.ORGANIZATION.value, repo, ""), None))
    return targets


def propose_schedules() -> tuple[list[Proposal], list[str]]:
    """Secrets GitHub has without a schedule, and the targets that could not be
    listed. Nothing is saved: an admin confirms with :func:`import_schedules`."""
    covered = {
        (s.scope, s.github_environment or "", s.name.upper())
        for s in SecretRotationSchedule.objects.select_related("environment")
    }
    proposals: list[Proposal] = []
    errors: list[str] = []
    for target, _env in import_targets():
        scope, repository, environment = target
        try:
            infos = list_target(target)
        except GitHubNotFound:
            continue
        except GitHubError as exc:
            errors.append(f"{'/'.join(filter(None, target))}: {_error_text(exc)}")
            continue
        for info in sorted(infos, key=lambda i: i.name):
            if (scope, environment, info.name.upper()) in covered:
                continue
            proposals.append(
                Proposal(
                    info.name.upper(), scope, environment, repository, info.updated_at
                )
            )
    return proposals, errors


def import_schedules(
    actor: audit.Actor, keys: list[str], now: datetime | None = None
) -> list[SecretRotationSchedule]:
    """Create schedules (default intervals) for the confirmed proposals ``keys``;
    GitHub's ``updated_at`` is their last rotation."""
    now = now or timezone.now()
    wanted = set(keys)
    proposals, _errors = propose_schedules()
    environments = {e.name: e for e in Environment.objects.all()}
    created = []
    with transaction.atomic():
        for proposal in proposals:
            if proposal.key not in wanted:
                continue
            schedule = SecretRotationSchedule(
                name=proposal.name,
                scope=proposal.scope,
                environment=environments.get(proposal.environment),
                last_rotated_at=proposal.updated_at,
                github_updated_at=proposal.updated_at,
                present=True,
                last_checked_at=now,
            )
            schedule.save()
            created.append(schedule)
            audit.record(actor, "secret_schedule.import", schedule)
    return created


# Rotate -----------------------------------------------------------------------------


@sensitive_variables("value")
def rotate(
    schedule: SecretRotationSchedule,
    value: str,
    actor: audit.Actor,
    now: datetime | None = None,
) -> SecretRotation:
    """Put a new value for the schedule's secret into GitHub and record the rotation.

    1. The gateway fetches the target's public key and seals ``value`` with it in
       this call; only the sealed box leaves the process.
    2. GitHub refusing or failing raises :class:`RotationRefused`: an audit row
       records the failure, and nothing is recorded as rotated.
    3. On success the rotation (who, when, key id) and an audit row are written in
       one transaction, and GitHub's new ``updated_at`` is read back so the next
       audit does not mistake this rotation for an external one.
    """
    now = now or timezone.now()
    target = target_of(schedule)
    scope, repository, environment = target
    try:
        # Inside the try: building the gateway checks the repository's name.
        key_id = gateway_for(repository).put_secret(
            scope,  # type: ignore[arg-type]
            schedule.name,
            value,
            environment or None,
        )
    except GitHubError as exc:
        audit.record(
            actor,
            "secret.rotate",
            schedule,
            outcome="failure",
            error=type(exc).__name__,
            status=exc.status,
        )
        log.warning(
            "rotating %s failed: %s (status %s)",
            schedule,
            type(exc).__name__,
            exc.status,
        )
        raise RotationRefused(
            f"GitHub refused the new value for {schedule.name}: {exc}",
            status=exc.status,
        ) from None
    updated_at = _read_back(target, schedule.name)
    user = actor if not isinstance(actor, str) and actor is not None else None
    with transaction.atomic():
        rotation = SecretRotation.objects.create(
            schedule=schedule,
            rotated_at=now,
            source=SecretRotation.Source.CONTROL_PLANE,
            actor=user if user is not None and user.is_authenticated else None,
            actor_name=audit.actor_name(actor),
            key_id=key_id,
            github_updated_at=updated_at,
        )
        schedule.last_rotated_at = now
        schedule.present = True
        schedule.last_checked_at = schedule.last_checked_at or now
        if updated_at is not None:
            schedule.github_updated_at = updated_at
        schedule.save()
        audit.record(actor, "secret.rotate", schedule, key_id=key_id)
    log.info("rotated %s (key %s)", schedule, key_id)
    return rotation


def _read_back(target: Target, name: str) -> datetime | None:
    try:
        infos = list_target(target)
    except GitHubError:
        return None  # the next audit attributes the change to this rotation
    return next((i.updated_at for i in infos if i.name.upper() == name.upper()), None)
