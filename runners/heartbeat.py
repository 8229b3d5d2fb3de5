"""``POST /heartbeat``: runner hosts report that they are alive, with a few facts.

The hottest path in the system (10,000 runners every 10 s is 1,000 requests a second),
so it does the least that is correct: hash the bearer token, validate the small JSON
body, and run one UPDATE found by the token digest's unique index. No read, no
session, no CSRF token, no user, no serializer. Answers:

- 204: recorded;
- 400 ``{"error": ...}``: the body is not a JSON object of known facts (names them);
- 401 ``{"error": ...}``: missing, unknown or revoked token (nothing written);
- 405: not a POST; 413: body over 4 KiB.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import F
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from runners.health import assess_host
from runners.models import Runner, token_digest

MAX_BODY_BYTES = 4096
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
        facts = json.loads(body)
    except (ValueError, UnicodeDecodeError):
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


@csrf_exempt
@login_not_required
def receive(request: HttpRequest) -> HttpResponse:
    """Record a heartbeat for the runner whose token is in ``Authorization: Bearer``."""
    if request.method != "POST":
        response = _error(405, "use POST")
        response["Allow"] = "POST"
        return response
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return _error(401, "send the runner's token as Authorization: Bearer <token>")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error(400, "bad Content-Length")
    if length > MAX_BODY_BYTES:
        return _error(413, f"body must be at most {MAX_BODY_BYTES} bytes")
    try:
        facts = parse_facts(request.read(MAX_BODY_BYTES + 1) if length else b"")
    except BadFacts as exc:
        return _error(400, str(exc))
    now = timezone.now()
    # One UPDATE through the digest's unique index: a wrong or revoked token and a
    # removed runner all match no row, so nothing is written.
    updated = Runner.objects.filter(
        heartbeat_token_digest=token_digest(token), removed_at__isnull=True
    ).update(
        last_heartbeat_at=now,
        heartbeat_deadline=now + timedelta(seconds=settings.HEARTBEAT_STALE_AFTER),
        first_seen_at=Coalesce(F("first_seen_at"), now),
        facts=facts,
        facts_problems=int(
            assess_host(
                disk_free_bytes=facts.get("disk_free_bytes"),
                disk_total_bytes=facts.get("disk_total_bytes"),
                load1=facts.get("load1"),
                cpus=facts.get("cpus"),
            )
        ),
    )
    if not updated:
        return _error(401, "unknown or revoked runner token")
    return HttpResponse(status=204)
