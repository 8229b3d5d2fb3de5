"""``POST /diagnostics``: a runner host's diagnostics report, beside ``/heartbeat``.

Authenticated like a heartbeat, with the runner's heartbeat token as
``Authorization: Bearer``; the body is ``{"token": "<the dispatched run's
correlation token>", "report": {...}}`` (the script ``agent/runner-diagnostics``
writes it). Only a run requested for this very runner and still in flight takes a
report. Answers:

- 201 ``{"status": "recorded"}``;
- 400 ``{"error": ...}``: not JSON, or a report of the wrong shape (names the field);
- 401 ``{"error": ...}``: missing, unknown or revoked token (429 once an address
  sends too many, as for heartbeats);
- 404: no such run for this runner; 409: the run already ended (timed out, say);
- 405: not a POST; 413: body over 64 KiB.
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from controlplane.parsers import nesting_problem
from diagnostics.domain import record_report
from diagnostics.report import MAX_BODY_BYTES, BadReport, validate
from runners.heartbeat import throttle_refusal
from runners.models import Runner, token_digest


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 405:
        response["Allow"] = "POST"
    return response


def _parse(body: bytes) -> tuple[str, dict[str, object]]:
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadReport("body is not valid JSON (UTF-8)") from None
    problem = nesting_problem(text)
    if problem is not None:
        raise BadReport(f"body is not valid JSON: {problem}")
    try:
        data = json.loads(text)
    except ValueError:
        raise BadReport("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadReport('body must be {"token": ..., "report": {...}}')
    unknown = sorted(set(data) - {"token", "report"})
    if unknown:
        raise BadReport(f"unknown field(s): {', '.join(unknown)}")
    token = data.get("token")
    if not isinstance(token, str) or not 0 < len(token) <= 40:
        raise BadReport("token must be the dispatched run's correlation token")
    return token, validate(data.get("report"))


@csrf_exempt
@login_not_required
def receive(request: HttpRequest) -> HttpResponse:
    """Record the diagnostics report of the runner whose token authenticates it."""
    if request.method != "POST":
        return _error(405, "use POST")
    scheme, _, secret = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > 200:
        return _error(401, "send the runner's token as Authorization: Bearer <token>")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error(400, "bad Content-Length")
    if length > MAX_BODY_BYTES:
        return _error(413, f"body must be at most {MAX_BODY_BYTES} bytes")
    runner = Runner.objects.filter(
        heartbeat_token_digest=token_digest(secret), removed_at__isnull=True
    ).first()
    if runner is None:
        status, error, retry_after = throttle_refusal(
            request.META, "unknown or revoked runner token"
        )
        response = _error(status, error)
        if retry_after:
            response["Retry-After"] = str(retry_after)
        return response
    try:
        token, report = _parse(request.read(MAX_BODY_BYTES + 1)[:MAX_BODY_BYTES])
    except BadReport as exc:
        return _error(400, str(exc))
    status, error = record_report(runner, token, report, timezone.now())
    if error:
        return _error(status, error)
    return JsonResponse({"status": "recorded"}, status=201)
