"""Throttles for failed sign-ins and rejected tokens, shared by every process.

Failures are counted in the database (``AuthFailureCount``), not in a cache: the
embedded setup has only per-process memory caches, and gunicorn processes and hosts
share nothing else, so an attacker could spread guesses across them.

- Sign-ins: ``LOGIN_MAX_FAILURES_PER_ACCOUNT`` failures for one username, or
  ``LOGIN_MAX_FAILURES_PER_ADDRESS`` from one client address, within
  ``LOGIN_FAILURE_WINDOW`` seconds lock that account or address for
  ``LOGIN_LOCKOUT_PERIOD``. A locked sign-in is refused even with the right password:
  passwords are guessable.
- API and heartbeat tokens: ``TOKEN_MAX_FAILURES_PER_ADDRESS`` 401s from one address
  within ``TOKEN_FAILURE_WINDOW`` lock the address for ``TOKEN_LOCKOUT_PERIOD``: its
  wrong tokens are then answered 429. A valid token still works: tokens are random
  256-bit values nobody guesses, so the lock only has to stop the guessing and the
  noise, and must not take down the runners or CI jobs that share a NAT address
  with one misconfigured neighbour.

Each new lockout leaves an audit row (the username or address, never a password
or a token).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request

from controlplane import audit
from controlplane.models import AuditEvent, AuthFailureCount

Scope = AuthFailureCount.Scope


def client_address(meta: Mapping[str, Any]) -> str:
    """The client's address from a WSGI environ or ``request.META``.

    ``REMOTE_ADDR`` unless ``TRUSTED_PROXY_HOPS`` says reverse proxies append to
    ``X-Forwarded-For``; then the address the outermost trusted proxy saw, counted
    from the end, since everything left of it is whatever the client sent.
    """
    hops: int = settings.TRUSTED_PROXY_HOPS
    if hops:
        forwarded = [
            part.strip()
            for part in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",")
            if part.strip()
        ]
        if forwarded:
            return forwarded[-min(hops, len(forwarded))][:200]
    return str(meta.get("REMOTE_ADDR", ""))[:200]


def minutes_left(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds() / 60))


def seconds_left(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


def locked_until(keys: list[tuple[str, str]], now: datetime) -> datetime | None:
    """When the latest lock on any of the ``(scope, key)`` pairs ends, or None if
    none is locked. One query through the (scope, key) unique index."""
    match = Q()
    for scope, key in keys:
        match |= Q(scope=scope, key=key)
    until: datetime | None = AuthFailureCount.objects.filter(
        match, locked_until__gt=now
    ).aggregate(until=Max("locked_until"))["until"]
    return until


def record_failure(
    scope: str, key: str, now: datetime, *, limit: int, window: int, lockout: int
) -> tuple[datetime | None, bool]:
    """Count one failure of ``key``. Returns when the key's lock ends (None: not
    locked) and whether this failure started it. A failure while locked is not
    counted and does not extend the lock.

    1. Lock the row (created on first failure; a racing creator is caught by the
       unique constraint inside ``get_or_create``).
    2. Start a new window if the current one is over.
    3. At the limit, lock for ``lockout`` seconds and start counting afresh.
    4. After a new row, delete the scope's rows whose window and lock are over:
       guesses from ever new addresses must not grow the table without end.
    """
    with transaction.atomic():
        row, created = AuthFailureCount.objects.select_for_update().get_or_create(
            scope=scope, key=key[:200], defaults={"window_started_at": now}
        )
        outcome = _count(row, now, limit=limit, window=window, lockout=lockout)
    if created:
        AuthFailureCount.objects.filter(
            Q(locked_until__isnull=True) | Q(locked_until__lte=now),
            scope=scope,
            window_started_at__lte=now - timedelta(seconds=window),
        ).delete()
    return outcome


def _count(
    row: AuthFailureCount, now: datetime, *, limit: int, window: int, lockout: int
) -> tuple[datetime | None, bool]:
    if row.locked_until is not None and row.locked_until > now:
        return row.locked_until, False
    if row.window_started_at <= now - timedelta(seconds=window):
        row.failures = 0
        row.window_started_at = now
    row.failures += 1
    started = row.failures >= limit
    if started:
        row.locked_until = now + timedelta(seconds=lockout)
        row.failures = 0
        row.window_started_at = now
    row.save(update_fields=["failures", "window_started_at", "locked_until"])
    return (row.locked_until if started else None), started


def _audit_lockout(
    action: str, scope: str, key: str, until: datetime, **detail: Any
) -> None:
    audit.record(
        None,
        action,
        outcome=AuditEvent.Outcome.DENIED,
        scope=scope,
        locked_until=until.isoformat(),
        **detail,
    )


# Sign-ins ------------------------------------------------------------------------


def lockout_message(until: datetime, now: datetime) -> str:
    minutes = minutes_left(until, now)
    return (
        "Too many failed sign-ins for this account or address; try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}."
    )


def login_locked_until(username: str, address: str, now: datetime) -> datetime | None:
    return locked_until(
        [(Scope.LOGIN_ACCOUNT, username), (Scope.LOGIN_ADDRESS, address)], now
    )


def login_failed(username: str, address: str, now: datetime) -> None:
    """Count a failed sign-in against the account and the address; audit a new
    lock of either."""
    for scope, key, limit, detail in (
        (
            Scope.LOGIN_ACCOUNT,
            username,
            settings.LOGIN_MAX_FAILURES_PER_ACCOUNT,
            {"username": username[:150]},
        ),
        (
            Scope.LOGIN_ADDRESS,
            address,
            settings.LOGIN_MAX_FAILURES_PER_ADDRESS,
            {"remote_addr": address},
        ),
    ):
        until, started = record_failure(
            scope,
            key,
            now,
            limit=limit,
            window=settings.LOGIN_FAILURE_WINDOW,
            lockout=settings.LOGIN_LOCKOUT_PERIOD,
        )
        if started and until is not None:
            _audit_lockout("login.lockout", scope, key, until, **detail)


def login_succeeded(username: str) -> None:
    """Forget the account's failures (not the address's: one account an attacker
    holds must not wipe the count of guesses at the others)."""
    AuthFailureCount.objects.filter(
        scope=Scope.LOGIN_ACCOUNT, key=username[:200]
    ).delete()


# Tokens --------------------------------------------------------------------------

# Addresses this process has seen locked, and until when: a locked address's
# further wrong tokens are then refused without a query. Locks only ever end by
# time, so a copy can only be right or early-expired.
_locked_here: dict[tuple[str, str], datetime] = {}
_locked_here_lock = threading.Lock()
_LOCKED_HERE_MAX = 10_000


def token_refused(scope: str, address: str, now: datetime) -> datetime | None:
    """A request from ``address`` presented a wrong token. Returns when the
    address's lock ends if it is locked (answer 429), else counts the failure and
    returns None (answer 401; also for the failure that starts the lock)."""
    with _locked_here_lock:
        until = _locked_here.get((scope, address))
    if until is not None and until > now:
        return until
    until, started = record_failure(
        scope,
        address,
        now,
        limit=settings.TOKEN_MAX_FAILURES_PER_ADDRESS,
        window=settings.TOKEN_FAILURE_WINDOW,
        lockout=settings.TOKEN_LOCKOUT_PERIOD,
    )
    if until is None:
        return None
    if started:
        _audit_lockout(
            f"{scope.removesuffix('-address').replace('-', '_')}.lockout",
            scope,
            address,
            until,
            remote_addr=address,
        )
        return None
    with _locked_here_lock:
        if len(_locked_here) >= _LOCKED_HERE_MAX:
            _locked_here.clear()
        _locked_here[(scope, address)] = until
    return until


def forget_local_locks() -> None:
    """Drop this process's copies of locks (tests that travel in time)."""
    with _locked_here_lock:
        _locked_here.clear()


def token_lockout_message(until: datetime, now: datetime) -> str:
    minutes = minutes_left(until, now)
    return (
        "Too many rejected tokens from this address; try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''}."
    )


class ThrottledTokenAuthentication(TokenAuthentication):  # type: ignore[misc]
    """knox token authentication whose rejections count against the client's
    address; a locked address's wrong tokens get 429 instead of 401."""

    def authenticate(self, request: Request) -> tuple[User, AuthToken] | None:
        try:
            return super().authenticate(request)  # type: ignore[no-any-return]
        except AuthenticationFailed:
            now = timezone.now()
            until = token_refused(
                Scope.API_TOKEN_ADDRESS, client_address(request.META), now
            )
            if until is None:
                raise
            raise Throttled(
                wait=seconds_left(until, now),
                detail=token_lockout_message(until, now),
            ) from None


class ThrottledKnoxTokenScheme(KnoxTokenScheme):  # type: ignore[no-untyped-call]
    """The OpenAPI description of knox tokens, for the throttled subclass too."""

    target_class = "controlplane.throttle.ThrottledTokenAuthentication"
