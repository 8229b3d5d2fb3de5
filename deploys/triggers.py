"""Requesting a deploy: validation, safeguards and idempotency, in one transaction.

Idempotency (the ``Idempotency-Key`` header): a key is scoped to the caller and kept
with the run it created (runs are never deleted, so well beyond 24 hours).

- same key, same body → the run the key created, nothing new (a replay);
- same key, different body → :class:`IdempotencyMismatch` (422);
- same key while the request that first used it has not committed yet →
  :class:`IdempotencyInProgress` (409).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane import audit
from controlplane.roles import Role, has_role
from deploys.models import DeployEvent, DeployRun, Environment, FreezeWindow

# Branch, tag or commit names as git allows them, minus the exotic corners.
REF_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/+-]{1,255}(?<![./])$")
KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
TICKET_MAX = 100
LOST_MESSAGE_GRACE = timedelta(seconds=5)


class DeployRequestError(Exception):
    """A deploy request that cannot be accepted; ``field`` names the culprit."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class IdempotencyMismatch(DeployRequestError):
    status = 422
    code = "idempotency_key_reused"


class IdempotencyInProgress(DeployRequestError):
    status = 409
    code = "idempotency_key_in_progress"


class BreakGlassForbidden(DeployRequestError):
    status = 403
    code = "break_glass_forbidden"


class DeployRefused(DeployRequestError):
    """The environment's safeguards refuse a deploy now (paused, one in progress)."""

    status = 409
    code = "refused"


@dataclass(frozen=True)
class DeployRequest:
    run: DeployRun
    # False when the idempotency key replayed an earlier request.
    created: bool


def caller_of(user: User | AnonymousUser) -> str:
    return f"user:{user.pk}" if isinstance(user, User) else "anonymous"


def fingerprint(environment: str, ref: str, change_ticket: str) -> str:
    body = json.dumps(
        {"environment": environment, "ref": ref, "change_ticket": change_ticket},
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def request_deploy(
    user: User | AnonymousUser,
    environment: Environment | str,
    ref: str = "",
    change_ticket: str = "",
    idempotency_key: str = "",
    break_glass_reason: str = "",
) -> DeployRequest:
    """Create a queued deploy run (or replay the one the key created).

    1. Validate the fields, naming the field in errors.
    2. Replay or refuse a known idempotency key.
    3. Apply the environment's safeguards: paused, freeze windows (an admin may
       break glass with a reason, audited), change-ticket pattern, policy.
    4. Create the run and its first event, audit it, enqueue it after commit.
    """
    env = _environment(environment)
    ref = (ref or env.default_ref).strip()
    if not REF_RE.match(ref):
        raise DeployRequestError(
            "not a valid git branch, tag or commit name", field="ref"
        )
    change_ticket = change_ticket.strip()
    if len(change_ticket) > TICKET_MAX:
        raise DeployRequestError(
            f"at most {TICKET_MAX} characters", field="change_ticket"
        )
    if idempotency_key and not KEY_RE.match(idempotency_key):
        raise DeployRequestError(
            "1 to 200 printable ASCII characters without spaces",
            field="idempotency_key",
        )
    caller = caller_of(user)
    digest = fingerprint(env.name, ref, change_ticket)
    if idempotency_key:
        replay = _replay(caller, idempotency_key, digest)
        if replay is not None:
            return replay
    if env.paused:
        raise DeployRefused(
            "deploys to this environment are paused"
            + (f": {env.paused_reason}" if env.paused_reason else ""),
            field="environment",
        )
    break_glass = _check_freeze(user, env, break_glass_reason.strip())
    if not env.ticket_matches(change_ticket):
        raise DeployRequestError(
            f"{env.name} needs a change ticket matching {env.change_ticket_pattern}",
            field="change_ticket",
        )
    try:
        with transaction.atomic():
            if (
                env.policy == Environment.Policy.REJECT
                and DeployRun.objects.unfinished().filter(environment=env).exists()
            ):
                raise DeployRefused(
                    f"a deploy to {env.name} is already queued or running",
                    field="environment",
                )
            run = _create(
                user, env, ref, change_ticket, idempotency_key, caller, digest
            )
            if break_glass is not None:
                reason = break_glass_reason.strip()
                DeployEvent.objects.create(
                    run=run,
                    kind=DeployEvent.Kind.BREAK_GLASS,
                    message=f"freeze broken by {run.requester_name}: {reason}",
                    detail={"freeze": break_glass.reason, "window": break_glass.pk},
                    created_at=run.created_at,
                )
                audit.record(
                    user,
                    "deploy.break_glass",
                    run,
                    freeze=break_glass.reason,
                    reason=reason,
                )
    except IntegrityError:
        if not idempotency_key:
            raise
        replay = _replay(caller, idempotency_key, digest)
        if replay is not None:
            return replay
        raise IdempotencyInProgress(
            "a request with this Idempotency-Key is still being processed",
            field="idempotency_key",
        ) from None
    return DeployRequest(run, True)


def redeploy_last_good(
    user: User | AnonymousUser,
    environment: Environment | str,
    idempotency_key: str = "",
    break_glass_reason: str = "",
) -> DeployRequest:
    """Request a new deploy of the environment's last succeeded ref, through the
    same gates as any other request."""
    env = _environment(environment)
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
        last.sha or last.ref,
        last.change_ticket,
        idempotency_key,
        break_glass_reason,
    )


def _check_freeze(
    user: User | AnonymousUser, env: Environment, break_glass_reason: str
) -> FreezeWindow | None:
    """The freeze window being broken (None when there is none), or a refusal."""
    window = env.freeze_at(timezone.now())
    if window is None:
        return None
    if not break_glass_reason:
        raise DeployRefused(
            f"{env.name} is frozen ({window.reason}); an admin may break glass "
            "with a reason",
            field="environment",
        )
    if not has_role(user, Role.ADMIN):
        raise BreakGlassForbidden(
            "only admins may deploy during a freeze", field="break_glass_reason"
        )
    return window


def _environment(environment: Environment | str) -> Environment:
    if isinstance(environment, Environment):
        return environment
    env = Environment.objects.filter(name=environment).first()
    if env is None:
        raise DeployRequestError(
            f"no environment named {environment!r}", field="environment"
        )
    return env


def _replay(caller: str, key: str, digest: str) -> DeployRequest | None:
    run = DeployRun.objects.filter(caller=caller, idempotency_key=key).first()
    if run is None:
        return None
    if run.request_fingerprint != digest:
        raise IdempotencyMismatch(
            "this Idempotency-Key was used with a different request body",
            field="idempotency_key",
        )
    return DeployRequest(run, False)


def _create(
    user: User | AnonymousUser,
    env: Environment,
    ref: str,
    change_ticket: str,
    key: str,
    caller: str,
    digest: str,
) -> DeployRun:
    from deploys.tasks import advance_run

    now = timezone.now()
    requester = user if isinstance(user, User) else None
    run = DeployRun.objects.create(
        environment=env,
        ref=ref,
        requester=requester,
        requester_name=requester.get_username() if requester else "anonymous",
        idempotency_key=key,
        request_fingerprint=digest,
        caller=caller,
        change_ticket=change_ticket,
        created_at=now,
        # The reconciler starts it if the message below is lost.
        next_check_at=now + LOST_MESSAGE_GRACE,
    )
    DeployEvent.objects.create(
        run=run,
        kind=DeployEvent.Kind.REQUESTED,
        message=f"{run.requester_name} requested {ref} on {env.name}",
        detail={"change_ticket": change_ticket},
        created_at=now,
    )
    audit.record(
        user,
        "deploy.request",
        run,
        environment=env.name,
        ref=ref,
        change_ticket=change_ticket,
    )
    transaction.on_commit(lambda: advance_run.delay(run.pk))
    return run
