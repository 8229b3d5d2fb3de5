"""The one question the deploy gate asks about secrets before a deploy starts."""

from __future__ import annotations

import logging
from datetime import datetime

from controlplane.github import (
    GitHubError,
    GitHubGateway,
    GitHubNotFound,
    Purpose,
    for_purpose,
    gateway_for,
)
from deploys.models import Environment
from rotations.models import SecretRotationSchedule, Status

log = logging.getLogger(__name__)


def check(env: Environment, now: datetime) -> tuple[list[str] | None, list[str]]:
    """``(missing, overdue)`` for a deploy to ``env`` at ``now``.

    ``missing``: required secrets GitHub does not have, or None when GitHub could
    not be asked. ``overdue``: required secrets overdue for rotation, asked only
    when nothing is missing and the environment blocks on overdue secrets (the
    gate waits for missing secrets first), else empty.
    """
    missing = _missing(env)
    if missing is None or missing or not env.block_on_overdue_secrets:
        return missing, []
    return missing, overdue_for(env, now)


def _missing(env: Environment) -> list[str] | None:
    """Required secrets GitHub does not have (repository, the environment of the
    same name, or the organization); None when GitHub could not be asked.

    Required: the environment's own list and every rotation schedule naming it."""
    wanted = required_names(env)
    if not wanted:
        return []
    gw = gateway_for(env.repository)
    try:
        with for_purpose(Purpose.SECRETS_GATE):
            present = _present(gw, env, wanted)
    except GitHubError as exc:
        log.warning("secret check for %s failed: %s", env.name, exc)
        return None
    return [name for name in wanted if name.upper() not in present]


def _present(gw: GitHubGateway, env: Environment, wanted: list[str]) -> set[str]:
    """Upper-cased names of the secrets the deploy job would see."""
    present = {s.name.upper() for s in gw.list_secrets("repository")}
    try:
        present |= {s.name.upper() for s in gw.list_secrets("environment", env.name)}
    except GitHubNotFound:
        pass  # no GitHub environment of that name: repository secrets only
    if gw.organization and any(n not in present for n in wanted):
        present |= {s.name.upper() for s in gw.list_secrets("organization")}
    return present


def overdue_for(env: Environment, now: datetime) -> list[str]:
    """Names of the secrets ``env`` requires that are overdue for rotation."""
    return list(
        SecretRotationSchedule.objects.required_by(env)
        .with_status(now)
        .filter(status=Status.OVERDUE)  # type: ignore[misc]
        .order_by("name")
        .values_list("name", flat=True)
    )


def required_names(env: Environment) -> list[str]:
    """Every secret ``env`` requires: its own list and the schedules naming it."""
    names = [str(n).upper() for n in env.required_secrets or ()]
    for name in (
        SecretRotationSchedule.objects.required_by(env)
        .order_by("name")
        .values_list("name", flat=True)
    ):
        if name.upper() not in names:
            names.append(name.upper())
    return names
