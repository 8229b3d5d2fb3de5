"""``POST /heartbeat``: runner hosts report that they are alive, with a few facts.

The hottest path in the system (10,000 runners every 10 s is 1,000 requests a second),
so it does the least that is correct: hash the bearer token, validate the small JSON
body, and run one UPDATE found by the token digest's unique index. No read, no
session, no CSRF token, no user, no serializer, and no per-request compilation of
the statement (see ``record_heartbeat``). Answers:

- 204: recorded; to an agent that sends ``X-Heartbeat-Follow-Interval: 1`` (it will
  follow the answer), the header ``X-Heartbeat-Interval: <seconds>`` says when to
  send the next one: ``HEARTBEAT_DEPLOY_INTERVAL`` while the runner holds a deploy,
  ``HEARTBEAT_INTERVAL`` otherwise. Only such an agent's heartbeats get the shorter
  ``HEARTBEAT_DEPLOY_STALE_AFTER`` deadline: an agent that does not follow keeps its
  own interval and the normal deadline;
- 400 ``{"error": ...}``: the body is not a JSON object of known facts (names them);
- 401 ``{"error": ...}``: missing, unknown or revoked token (nothing written);
- 429 ``{"error": ...}`` with ``Retry-After``: a wrong token from an address that sent
  too many (``controlplane.throttle``; good tokens from it are still recorded);
- 405: not a POST; 413: body over 4 KiB.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import psycopg
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Field
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from controlplane import throttle
from controlplane.parsers import nesting_problem
from runners.health import assess_host
from runners.models import Runner, token_digest

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
# The agent says it follows the answer's interval (request), the answer gives it.
FOLLOW_META = "HTTP_X_HEARTBEAT_FOLLOW_INTERVAL"
INTERVAL_HEADER = "X-Heartbeat-Interval"
_MAX_INT = 2**62  # far above any disk or uptime, far below JSON/DB integer limits


def _non_negative_int(value: Any) -> bool:
    return type(value) is int and 0 <= value < _MAX_INT


def _positive_int(value: Any) -> bool:
    return type(value) is int and 0 < value < 1_000_000


def _non_negative_number(value: Any) -> bool:
    return (
        type(value) in (int, float) and math.isfinite(value) and 0 <= value < _MAX_INT
    )


def _version(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable()


# Fact name → (validator, what it must be, for the error message).
FACTS: dict[str, tuple[Any, str]] = {
    "runner_version": (_version, "a string of 1 to 64 printable characters"),
    "disk_free_bytes": (_non_negative_int, "a non-negative integer"),
    "disk_total_bytes": (_non_negative_int, "a non-negative integer"),
    "load1": (_non_negative_number, "a non-negative number"),
    "cpus": (_positive_int, "a positive integer"),
    "uptime_seconds": (_non_negative_int, "a non-negative integer"),
}


class BadFacts(ValueError):
    pass


def parse_facts(body: bytes) -> dict[str, Any]:
    """The facts in a heartbeat body (empty body: none), or ``BadFacts`` saying
    which field is wrong."""
    if not body.strip():
        return {}
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadFacts("body is not valid JSON") from None
    # Checked before json.loads, which would recurse into RecursionError (a 500).
    problem = nesting_problem(text)
    if problem is not None:
        raise BadFacts(f"body is not valid JSON: {problem}")
    try:
        facts = json.loads(text)
    except ValueError:
        raise BadFacts("body is not valid JSON") from None
    if not isinstance(facts, dict):
        raise BadFacts("body must be a JSON object")
    unknown = sorted(set(facts) - set(FACTS))
    if unknown:
        raise BadFacts(f"unknown field(s): {', '.join(unknown)}")
    for name, value in facts.items():
        valid, expected = FACTS[name]
        if not valid(value):
            raise BadFacts(f"{name} must be {expected}")
    return facts


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@functools.cache
def _update_sql(vendor: str) -> str:
    """The heartbeat UPDATE, written once per database vendor from the model's names.

    The ORM's ``filter(...).update(...)`` builds and compiles the same statement on
    every call, which measured as more than half of the endpoint's CPU time."""
    meta = Runner._meta
    quote = connection.ops.quote_name

    def col(name: str) -> str:
        return quote(str(cast("Field[Any, Any]", meta.get_field(name)).column))

    # The deadline depends on the row (does the runner hold a deploy?) and on the
    # agent (does it follow the answer's interval?); RETURNING tells the answer
    # which interval that was, still in one statement.
    holds = col("holds_deploy")
    return (
        f"UPDATE {quote(meta.db_table)} SET {col('last_heartbeat_at')} = %s, "
        f"{col('heartbeat_deadline')} = CASE WHEN {holds} AND %s THEN %s ELSE %s END, "
        f"{col('first_seen_at')} = COALESCE({col('first_seen_at')}, %s), "
        f"{col('facts')} = %s, {col('facts_problems')} = %s "
        f"WHERE {col('heartbeat_token_digest')} = %s AND {col('removed_at')} IS NULL "
        f"RETURNING {holds}"
    )


# What record_heartbeat found: no such active runner, a runner that holds no deploy,
# one that holds a deploy.
NOT_FOUND, RECORDED, RECORDED_DEPLOYING = 0, 1, 2


def record_heartbeat(
    digest: str,
    now: datetime,
    facts: dict[str, Any],
    problems: int,
    *,
    follows: bool = False,
) -> int:
    """Record a heartbeat of the active runner whose token has ``digest``: one
    UPDATE through the digest's unique index, no read first. Returns ``NOT_FOUND``
    for an unknown or revoked token or a removed runner, else ``RECORDED`` or, when
    the runner holds a deploy, ``RECORDED_DEPLOYING``.

    The deadline is ``HEARTBEAT_STALE_AFTER`` from now, or the shorter
    ``HEARTBEAT_DEPLOY_STALE_AFTER`` when the runner holds a deploy and its agent
    ``follows`` the answer's interval (it will beat every HEARTBEAT_DEPLOY_INTERVAL).

    Same effect as ``Runner.objects.filter(heartbeat_token_digest=digest,
    removed_at__isnull=True).update(...)``, at a fraction of the CPU cost.
    """
    ops = connection.ops
    when = ops.adapt_datetimefield_value(now)
    deadline = ops.adapt_datetimefield_value(
        now + timedelta(seconds=settings.HEARTBEAT_STALE_AFTER)
    )
    short_deadline = ops.adapt_datetimefield_value(
        now + timedelta(seconds=settings.HEARTBEAT_DEPLOY_STALE_AFTER)
    )
    params = [
        when,
        follows,
        short_deadline,
        deadline,
        when,
        Runner._meta.get_field("facts").get_db_prep_save(facts, connection),
        problems,
        digest,
    ]
    # With CONN_HEALTH_CHECKS Django pings the database before the first query of
    # each request: a second round trip per heartbeat. Skip the ping and retry once
    # on a fresh connection if the kept one turns out to be dead instead.
    optimistic = (
        getattr(connection, "health_check_enabled", False)
        and not getattr(connection, "health_check_done", True)
        and connection.connection is not None
    )
    if optimistic:
        setattr(connection, "health_check_done", True)  # noqa: B010 - not in stubs
    sql = _update_sql(connection.vendor)
    try:
        return _execute(sql, params)
    except (OperationalError, InterfaceError):
        if not optimistic:
            raise
        connection.close()
        return _execute(sql, params)


def _outcome(row: Any) -> int:
    if row is None:
        return NOT_FOUND
    return RECORDED_DEPLOYING if row[0] else RECORDED


def _execute(sql: str, params: list[Any]) -> int:
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return _outcome(cursor.fetchone())
    # Django's PostgreSQL cursors bind parameters client-side, sending the statement
    # as new text each time. A server-side-binding cursor lets psycopg prepare the
    # UPDATE once per connection (after a few uses) and send only the parameters:
    # measured at half the CPU per heartbeat. Wrapped like Django's own cursors, so
    # errors, query logging and transactions behave the same.
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    # (django-stubs type these as taking Django's wrapper; they take a DB-API cursor.)
    wrapped = (
        connection.make_debug_cursor(raw)  # type: ignore[arg-type]
        if connection.queries_logged
        else connection.make_cursor(raw)  # type: ignore[arg-type]
    )
    with wrapped as cursor:
        cursor.execute(sql, params)
        return _outcome(cursor.fetchone())


def handle(
    method: str,
    authorization: str,
    content_length: str,
    read: Callable[[int], bytes],
    follow: str = "",
) -> tuple[int, str, int]:
    """Answer one heartbeat request: ``(status, error message, next interval)``,
    the message empty on success (204), the interval 0 unless the agent said it
    follows it (``follow``, the X-Heartbeat-Follow-Interval header, is "1"). Shared
    by the Django view and the WSGI front door."""
    if method != "POST":
        return 405, "use POST", 0
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return 401, "send the runner's token as Authorization: Bearer <token>", 0
    try:
        length = int(content_length or 0)
    except ValueError:
        return 400, "bad Content-Length", 0
    if length > MAX_BODY_BYTES:
        return 413, f"body must be at most {MAX_BODY_BYTES} bytes", 0
    try:
        facts = parse_facts(read(min(length, MAX_BODY_BYTES)) if length > 0 else b"")
    except BadFacts as exc:
        return 400, str(exc), 0
    problems = assess_host(
        disk_free_bytes=facts.get("disk_free_bytes"),
        disk_total_bytes=facts.get("disk_total_bytes"),
        load1=facts.get("load1"),
        cpus=facts.get("cpus"),
    )
    now = timezone.now()
    follows = follow.strip() == "1"
    outcome = record_heartbeat(
        token_digest(token), now, facts, int(problems), follows=follows
    )
    if outcome == NOT_FOUND:
        return 401, "unknown or revoked runner token", 0
    if not follows:
        return 204, "", 0
    if outcome == RECORDED_DEPLOYING:
        return 204, "", settings.HEARTBEAT_DEPLOY_INTERVAL
    return 204, "", settings.HEARTBEAT_INTERVAL


def throttle_refusal(meta: Mapping[str, Any], error: str) -> tuple[int, str, int]:
    """A 401's answer after the client address's throttle: ``(401, error, 0)``,
    counted, or ``(429, message, retry-after seconds)`` once the address is locked.
    Only refusals get here: a good token's heartbeat stays one UPDATE."""
    now = timezone.now()
    until = throttle.token_refused(
        throttle.Scope.HEARTBEAT_ADDRESS, throttle.client_address(meta), now
    )
    if until is None:
        return 401, error, 0
    return (
        429,
        throttle.token_lockout_message(until, now),
        throttle.seconds_left(until, now),
    )


@csrf_exempt
@login_not_required
def receive(request: HttpRequest) -> HttpResponse:
    """Record a heartbeat for the runner whose token is in ``Authorization: Bearer``."""
    status, error, interval = handle(
        request.method or "",
        request.META.get("HTTP_AUTHORIZATION", ""),
        request.META.get("CONTENT_LENGTH", ""),
        request.read,
        request.META.get(FOLLOW_META, ""),
    )
    if status == 204:
        recorded = HttpResponse(status=204)
        if interval:
            recorded[INTERVAL_HEADER] = str(interval)
        return recorded
    retry_after = 0
    if status == 401:
        status, error, retry_after = throttle_refusal(request.META, error)
    response = JsonResponse({"error": error}, status=status)
    if status == 405:
        response["Allow"] = "POST"
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


_REASONS = {
    204: "204 No Content",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    405: "405 Method Not Allowed",
    413: "413 Content Too Large",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
}


class HeartbeatApp:
    """WSGI front door: answers ``/heartbeat`` itself and hands every other request
    to Django (``controlplane.wsgi`` wraps the Django application in it).

    Django's request handling around a view (request and response objects, request
    signals, middleware) measured as most of a heartbeat's CPU time; the endpoint
    needs none of it. Database connections are kept and retired exactly as Django's
    request signals would (``CONN_MAX_AGE``, errors).
    """

    def __init__(self, application: Callable[..., Any]) -> None:
        self.application = application

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Any:
        if environ.get("PATH_INFO") != "/heartbeat":
            return self.application(environ, start_response)
        retry_after = interval = 0
        try:
            status, error, interval = handle(
                environ.get("REQUEST_METHOD", ""),
                environ.get("HTTP_AUTHORIZATION", ""),
                environ.get("CONTENT_LENGTH", ""),
                environ["wsgi.input"].read,
                environ.get(FOLLOW_META, ""),
            )
            if status == 401:
                status, error, retry_after = throttle_refusal(environ, error)
        except Exception:
            logger.exception("heartbeat failed")
            status, error = 500, "internal error"
        finally:
            connection.close_if_unusable_or_obsolete()
        headers = [("Content-Length", "0")]
        if interval:
            headers.append((INTERVAL_HEADER, str(interval)))
        body = b""
        if status != 204:
            body = json.dumps({"error": error}).encode()
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ]
            if status == 405:
                headers.append(("Allow", "POST"))
            if retry_after:
                headers.append(("Retry-After", str(retry_after)))
        start_response(_REASONS[status], headers)
        return [body]


class HeartbeatMiddleware:
    """Serves ``/heartbeat`` ahead of every other middleware.

    None of them has work to do for a runner's heartbeat (no session, user, CSRF
    token, messages, security headers or page metrics), and together they cost more
    CPU than the endpoint itself: listed first in ``MIDDLEWARE``, this answers
    heartbeats directly and passes everything else on unchanged.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == "/heartbeat":
            return receive(request)
        return self.get_response(request)
