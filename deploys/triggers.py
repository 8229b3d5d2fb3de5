"""Requesting a deploy: validation, safeguards and idempotency.

Idempotency (the ``Idempotency-Key`` header): a key is scoped to the caller and
recorded in an :class:`IdempotencyRecord`, kept ``IDEMPOTENCY_KEY_RETENTION_HOURS``
(at least 24 h).

- The key is reserved (committed) before anything else is written; the run, its
  first event and the first response are written with the key in one transaction.
- same key, same body → the run the key created and the first response (a replay);
- same key, different body → :class:`IdempotencyMismatch` (422);
- same key while the request that reserved it is in flight →
  :class:`IdempotencyInProgress` (409); a reservation left by a process that died
  is taken over after ``IN_FLIGHT_TIMEOUT``;
- a request that is refused (validation, safeguards) releases its key, so a retry
  is judged afresh.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.utils import timezone

from controlplane import audit
from controlplane.github import is_full_sha
from controlplane.models import AuditEvent
from controlplane.roles import Role, has_role
from deploys import change_tickets, enqueue, request_ticket, rules
from deploys.break_glass import BreakGlass
from deploys.commits import CommitLookupError, resolve
from deploys.models import (
    DeployEvent,
    DeployRun,
    Environment,
    IdempotencyRecord,
)
from deploys.request_errors import (
    BreakGlassForbidden,
    DeployRefused,
    DeployRequestError,
    GitHubUnreachable,
    IdempotencyInProgress,
    IdempotencyMismatch,
    JiraUnreachable,
    RuleRefused,
)

# Branch, tag or commit names as git allows them, minus the exotic corners.
REF_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/+-]{1,255}(?<![./])$")
KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
LOST_MESSAGE_GRACE = timedelta(seconds=5)
# A request holds its key this long at most: creating a run takes milliseconds, and
# web workers are killed after 30 s; a reservation older than this is abandoned.
IN_FLIGHT_TIMEOUT = timedelta(seconds=60)
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class DeployRequest:
    run: DeployRun
    # False when the idempotency key replayed an earlier request.
    created: bool
    # What ``respond`` rendered when the run was created (None without a key, and
    # for keys first used where no response was rendered, e.g. the UI's form).
    response: Any = None


# Renders the response to a request, inside the transaction that creates the run.
Responder = Callable[[DeployRun], Any]


def caller_of(user: User | AnonymousUser) -> str:
    return f"user:{user.pk}" if isinstance(user, User) else "anonymous"


def fingerprint(environment: str, ref: str, change_ticket: str, sha: str = "") -> str:
    fields = {"environment": environment, "ref": ref, "change_ticket": change_ticket}
    if sha:
        fields["sha"] = sha
    body = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def request_deploy(
    user: User | AnonymousUser,
    environment: Environment | str,
    ref: str = "",
    change_ticket: str = "",
    idempotency_key: str = "",
    break_glass_reason: str = "",
    respond: Responder | None = None,
    sha: str = "",
    on_create: Responder | None = None,
) -> DeployRequest:
    """Create a queued deploy run (or replay the one the key created); a refused
    request is audited as ``deploy.request`` with outcome ``denied`` and why.
    ``on_create`` runs in the transaction that creates the run (never on a replay)."""
    try:
        return _request_deploy(
            user,
            environment,
            ref,
            change_ticket,
            idempotency_key,
            break_glass_reason,
            respond,
            sha,
            on_create,
        )
    except IdempotencyInProgress:
        raise  # a retry while the first request is still being made: not refused
    except DeployRequestError as exc:
        name = environment.name if isinstance(environment, Environment) else environment
        audit.record(
            user,
            "deploy.request",
            outcome=AuditEvent.Outcome.DENIED,
            environment=str(name)[:100],
            ref=str(ref)[:255],
            code=exc.code,
            field=exc.field,
            reason=exc.message,
        )
        raise


def _request_deploy(
    user: User | AnonymousUser,
    environment: Environment | str,
    ref: str,
    change_ticket: str,
    idempotency_key: str,
    break_glass_reason: str,
    respond: Responder | None,
    sha: str,
    on_create: Responder | None,
) -> DeployRequest:
    """Create a queued deploy run (or replay the one the key created).

    1. Validate the fields, naming the field in errors.
    2. Reserve the idempotency key, or replay or refuse a known one.
    3. Apply the environment's safeguards: paused, freeze windows (an admin may
       break glass with a reason, audited), change-ticket pattern, and the
       ticket in JIRA when JIRA_URL is set (JIRA down is a 503 unless an admin
       breaks glass: ``request_ticket``).
    4. Resolve the ref to its commit on GitHub now (or check ``sha`` exists), outside
       any transaction: an unknown ref is refused, GitHub down is a 503.
    5. Create the run with its SHA and its first event (policy checked), audit it,
       store the key's response (``respond``), enqueue the run after commit.
    """
    env = environment_named(environment)
    ref = (ref or env.default_ref).strip()
    sha = sha.strip()
    if not REF_RE.match(ref):
        raise DeployRequestError(
            "not a valid git branch, tag or commit name", field="ref"
        )
    if is_full_sha(ref):
        # GitHub dispatches branches and tags only; the job checks the commit out.
        raise DeployRequestError(
            "a commit SHA cannot be dispatched: give the branch or tag it is on as "
            "ref and the commit as sha",
            field="ref",
        )
    if sha and not is_full_sha(sha):
        raise DeployRequestError(
            "a full 40-character lowercase hexadecimal commit SHA", field="sha"
        )
    change_ticket = change_ticket.strip()
    if bad := request_ticket.field_error(change_ticket):
        raise DeployRequestError(bad, field="change_ticket")
    if idempotency_key and not KEY_RE.match(idempotency_key):
        raise DeployRequestError(
            "1 to 200 printable ASCII characters without spaces",
            field="idempotency_key",
        )
    if not idempotency_key:
        glass = _check_safeguards(user, env, change_ticket, break_glass_reason)
        sha = _resolve(env, ref, sha)
        broken = _check_rules(user, env, ref, sha, break_glass_reason)
        return DeployRequest(
            _safeguarded_create(
                user,
                env,
                ref,
                sha,
                change_ticket,
                break_glass_reason,
                glass,
                broken,
                on_create,
            ),
            True,
        )
    reserved = _reserve(
        caller_of(user),
        idempotency_key,
        fingerprint(env.name, ref, change_ticket, sha),
    )
    if isinstance(reserved, DeployRequest):
        return reserved
    try:
        glass = _check_safeguards(user, env, change_ticket, break_glass_reason)
        sha = _resolve(env, ref, sha)
        broken = _check_rules(user, env, ref, sha, break_glass_reason)
        with transaction.atomic():
            run = _safeguarded_create(
                user,
                env,
                ref,
                sha,
                change_ticket,
                break_glass_reason,
                glass,
                broken,
                on_create,
            )
            reserved.run = run
            reserved.response = respond(run) if respond else None
            reserved.save(update_fields=["run", "response"])
    except BaseException:
        # Refused or broken: nothing was created, the key is free again.
        IdempotencyRecord.objects.filter(pk=reserved.pk, run__isnull=True).delete()
        raise
    return DeployRequest(run, True, reserved.response)


def _resolve(env: Environment, ref: str, sha: str) -> str:
    try:
        return resolve(env, ref, sha)
    except CommitLookupError as exc:
        kind = GitHubUnreachable if exc.unavailable else DeployRequestError
        raise kind(exc.message, field=exc.field) from None


def _check_rules(
    user: User | AnonymousUser, env: Environment, ref: str, sha: str, reason: str
) -> list[rules.Refusal]:
    """The deploy rules' refusals an admin breaks glass past (empty when the rules
    allow the commit); a refusal otherwise. GitHub silent about the ref is a 503."""
    try:
        refusals = rules.check(env, ref, sha, timezone.now())
    except CommitLookupError as exc:
        raise GitHubUnreachable(exc.message, field=exc.field) from None
    if refusals and not reason.strip():
        raise RuleRefused(refusals)
    if refusals and not has_role(user, Role.ADMIN):
        raise BreakGlassForbidden(
            "only admins may break glass past a deploy rule", field="break_glass_reason"
        )
    return refusals


def _check_safeguards(
    user: User | AnonymousUser,
    env: Environment,
    change_ticket: str,
    break_glass_reason: str,
) -> BreakGlass | None:
    """Refuse a paused, frozen (without break-glass) or unticketed request, or one
    whose JIRA ticket does not allow it (``request_ticket``); what an admin's
    break-glass breaks, if anything (a freeze, approvals, a JIRA that cannot
    answer)."""
    if env.paused:
        raise DeployRefused(
            "deploys to this environment are paused"
            + (f": {env.paused_reason}" if env.paused_reason else ""),
            field="environment",
        )
    break_glass = _check_break_glass(user, env, break_glass_reason.strip())
    try:
        unverified = request_ticket.check(user, env, change_ticket, break_glass_reason)
    except change_tickets.TicketUnverifiable as exc:
        raise JiraUnreachable(exc.message, field="change_ticket") from None
    except change_tickets.TicketRefused as exc:
        raise DeployRequestError(exc.message, field="change_ticket") from None
    if unverified:
        return (break_glass or BreakGlass()).past_jira(unverified)
    return break_glass


def _safeguarded_create(
    user: User | AnonymousUser,
    env: Environment,
    ref: str,
    sha: str,
    change_ticket: str,
    break_glass_reason: str,
    break_glass: BreakGlass | None,
    broken: list[rules.Refusal],
    on_create: Responder | None,
) -> DeployRun:
    """Create the run of a checked, resolved request; the policy is checked in the
    creating transaction, so two requests cannot both pass it. An admin's break
    glass past a freeze (``break_glass``) or deploy rules (``broken``) is recorded."""
    with transaction.atomic():
        if (
            env.policy == Environment.Policy.REJECT
            and DeployRun.objects.unfinished().filter(environment=env).exists()
        ):
            raise DeployRefused(
                f"a deploy to {env.name} is already queued or running",
                field="environment",
            )
        run = _create(user, env, ref, sha, change_ticket)
        glass = (break_glass or BreakGlass()).with_rules(broken)
        if glass.breaks_anything:
            glass.record(user, run, break_glass_reason.strip())
        if on_create is not None:
            on_create(run)
    return run


def _check_break_glass(
    user: User | AnonymousUser, env: Environment, break_glass_reason: str
) -> BreakGlass | None:
    """What the request's break-glass breaks (None: nothing to break, or no
    break-glass asked for), or a refusal: a freeze without break-glass, or
    break-glass by someone who is not an admin."""
    window = env.freeze_at(timezone.now())
    if window is not None and not break_glass_reason:
        raise DeployRefused(
            f"{env.name} is frozen ({window.reason}); an admin may break glass "
            "with a reason",
            field="environment",
        )
    skipped = env.signoffs_required if break_glass_reason else 0
    if window is None and not skipped:
        return None
    if not has_role(user, Role.ADMIN):
        raise BreakGlassForbidden(
            "only admins may deploy during a freeze"
            if window is not None
            else "only admins may break glass to skip approvals in the control plane; "
            "leave break_glass_reason empty and ask another SRE to approve",
            field="break_glass_reason",
        )
    return BreakGlass(window, skipped)


def environment_named(environment: Environment | str) -> Environment:
    if isinstance(environment, Environment):
        return environment
    env = Environment.objects.filter(name=environment).first()
    if env is None:
        raise DeployRequestError(
            f"no environment named {environment!r}", field="environment"
        )
    return env


def _reserve(caller: str, key: str, digest: str) -> IdempotencyRecord | DeployRequest:
    """The caller's reservation of ``key`` (committed at once, so a concurrent
    request sees it), or the replay of the request that used it first."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                caller=caller, key=key, fingerprint=digest, reserved_at=now
            )
    except IntegrityError:
        pass
    record = (
        IdempotencyRecord.objects.select_related("run__environment")
        .filter(caller=caller, key=key)
        .first()
    )
    if record is not None and record.fingerprint != digest:
        raise IdempotencyMismatch(
            "this Idempotency-Key was used with a different request body",
            field="idempotency_key",
        )
    if record is not None and record.run is not None:
        return DeployRequest(record.run, False, record.response)
    if record is not None and record.reserved_at < now - IN_FLIGHT_TIMEOUT:
        # Abandoned by a process that died mid-request: take it over, unless
        # another retry just did.
        taken = IdempotencyRecord.objects.filter(
            pk=record.pk, run__isnull=True, reserved_at=record.reserved_at
        ).update(reserved_at=now)
        if taken:
            record.reserved_at = now
            return record
    raise IdempotencyInProgress(
        "a request with this Idempotency-Key is still being processed; "
        "retry in a few seconds",
        field="idempotency_key",
    )


def prune_idempotency_records(now: datetime | None = None) -> int:
    """Delete idempotency records past the retention, in bounded batches."""
    cutoff = (now or timezone.now()) - timedelta(
        hours=settings.IDEMPOTENCY_KEY_RETENTION_HOURS
    )
    deleted = 0
    while True:
        batch = list(
            IdempotencyRecord.objects.filter(reserved_at__lt=cutoff).values_list(
                "pk", flat=True
            )[:PRUNE_BATCH]
        )
        if not batch:
            return deleted
        deleted += IdempotencyRecord.objects.filter(pk__in=batch).delete()[0]


def _create(
    user: User | AnonymousUser,
    env: Environment,
    ref: str,
    sha: str,
    change_ticket: str,
) -> DeployRun:
    now = timezone.now()
    requester = user if isinstance(user, User) else None
    run = DeployRun.objects.create(
        environment=env,
        ref=ref,
        sha=sha,
        requester=requester,
        requester_name=requester.get_username() if requester else "anonymous",
        change_ticket=change_ticket,
        created_at=now,
        timeouts={name: getattr(env, name) for name in DeployRun.TIMEOUTS},
        # The reconciler starts it if the message below is lost.
        next_check_at=now + LOST_MESSAGE_GRACE,
    )
    DeployEvent.objects.create(
        run=run,
        kind=DeployEvent.Kind.REQUESTED,
        message=f"{run.requester_name} requested {ref} ({sha[:12]}) on {env.name}",
        detail={"change_ticket": change_ticket, "sha": sha},
        created_at=now,
    )
    audit.record(
        user,
        "deploy.request",
        run,
        environment=env.name,
        ref=ref,
        sha=sha,
        change_ticket=change_ticket,
    )
    enqueue.advance_on_commit(run.pk)
    return run
