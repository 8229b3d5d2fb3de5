"""Deploys that repeat a recorded commit: "redeploy last good" and rollback.

Both go through :func:`deploys.triggers.request_deploy`, so every gate, freeze and
safeguard of a new request applies; they only choose the ref and SHA.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User

from controlplane import audit
from deploys.commits import rollback_target
from deploys.models import DeployRun, Environment, Rollback
from deploys.request_errors import DeployRequestError
from deploys.triggers import DeployRequest, Responder, environment_named, request_deploy


def redeploy_last_good(
    user: User | AnonymousUser,
    environment: Environment | str,
    idempotency_key: str = "",
    break_glass_reason: str = "",
    respond: Responder | None = None,
) -> DeployRequest:
    """Request a new deploy of the environment's last succeeded commit (its ref and
    recorded SHA; the ref's commit now if none was recorded), through the same gates
    as any other request."""
    env = environment_named(environment)
    last = (
        DeployRun.objects.filter(environment=env, state=DeployRun.State.SUCCEEDED)
        .order_by("-finished_at", "-pk")
        .first()
    )
    if last is None:
        raise DeployRequestError(
            f"{env.name} has no succeeded deploy to repeat", field="environment"
        )
    return request_deploy(
        user,
        env,
        last.ref,
        last.change_ticket,
        idempotency_key,
        break_glass_reason,
        respond,
        sha=last.sha,
    )


def rollback(
    user: User | AnonymousUser,
    environment: Environment | str,
    idempotency_key: str = "",
    break_glass_reason: str = "",
    respond: Responder | None = None,
) -> DeployRequest:
    """Request a deploy of the commit the environment ran before its current one
    (the latest succeeded deploy with another SHA), through the same gates; audited
    with both SHAs."""
    env = environment_named(environment)
    found = rollback_target(env)
    if found is None:
        raise DeployRequestError(
            f"{env.name} has no earlier succeeded deploy of another commit to roll "
            "back to",
            field="environment",
        )
    current, target = found

    def record(run: DeployRun) -> None:
        # With the run, so a crash cannot leave a rollback counted as a change.
        Rollback.objects.create(run=run, replaced=current)
        audit.record(
            user,
            "deploy.rollback",
            run,
            environment=env.name,
            from_sha=current.sha,
            to_sha=target.sha,
            from_deploy=current.pk,
            to_deploy=target.pk,
        )

    return request_deploy(
        user,
        env,
        target.ref,
        target.change_ticket,
        idempotency_key,
        break_glass_reason,
        respond,
        sha=target.sha,
        on_create=record,
    )
