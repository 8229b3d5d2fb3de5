"""The GitHub webhook receiver: verify, store, enqueue, answer.

GitHub waits at most 10 seconds and never redelivers by itself, so the view does no
processing: it checks the signature over the raw body, stores the delivery once
(deduplicated on ``X-GitHub-Delivery``) and enqueues the work after commit.

Every signed delivery is stored, so the Webhooks page shows it: events we do not use
and deliveries from repositories we do not manage as ``ignored`` (answered 202, so
GitHub does not list them as failures), malformed ones as ``failed`` at once
(answered 400, which GitHub's delivery log shows; the recovery task skips them, as
it skips every guid already stored). Unsigned requests are refused and not stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from prometheus_client import Counter

from deploys.models import Environment, WebhookDelivery

log = logging.getLogger(__name__)

# GitHub caps payloads at 25 MB; workflow events are a few KB. Anything this big is
# not a workflow event from GitHub.
MAX_BODY_BYTES = 1024 * 1024
PROCESSED_EVENTS = frozenset(
    {"workflow_job", "workflow_run", "deployment_status", "deployment_protection_rule"}
)
# Events whose payload carries no object named after the event.
_FLAT_EVENTS = frozenset({"deployment_protection_rule"})
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# Per process (summed across gunicorn workers by /metrics): the WebhookSignatureFailures
# alert watches it. Both reasons start at 0 so a first failure is an increase.
REJECTED = Counter(
    "controlplane_webhook_rejected",
    "Webhook deliveries refused for a missing or wrong X-Hub-Signature-256.",
    ["reason"],
)
for _reason in ("missing_signature", "bad_signature"):
    REJECTED.labels(reason=_reason)


def signature_is_valid(secret: str, body: bytes, header: str) -> bool:
    """Check ``X-Hub-Signature-256`` (``sha256=<hex HMAC>``) in constant time."""
    if not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256="))


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _lower(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


def managed_repositories() -> set[str]:
    """Lower-cased owner/name of every repository the control plane deploys from."""
    names = Environment.objects.values_list("repository", flat=True).distinct()
    return {settings.GITHUB_REPOSITORY.lower(), *(n.lower() for n in names)}


def out_of_scope(event: str, payload: dict[str, Any]) -> str:
    """Why a delivery is not ours to apply, or "" when it is.

    Deploys come only from managed repositories. A ``workflow_job`` from any other
    repository of GITHUB_ORGANIZATION may run on our organization-level runners, so
    it is accepted for their busy flags (and can never match a deploy).
    """
    repository = payload.get("repository")
    if not isinstance(repository, dict):
        return "the payload names no repository"
    name = _lower(repository.get("full_name"))
    if name in managed_repositories():
        return ""
    org = settings.GITHUB_ORGANIZATION.lower()
    if event == "workflow_job" and org:
        owner = payload.get("organization") or repository.get("owner") or {}
        if isinstance(owner, dict) and _lower(owner.get("login")) == org:
            return ""
    return f"repository {repository.get('full_name')} is not managed here"


def _verdict(
    event: str, payload: dict[str, Any] | None
) -> tuple[str, str, JsonResponse]:
    """What to record for a signed delivery (outcome, reason or error) and the answer.

    Signed means it came from GitHub, so even a malformed one is kept, as failed;
    its 400 shows in GitHub's delivery log too, and recovery never redelivers a
    guid that is stored here.
    """
    Outcome = WebhookDelivery.Outcome
    if payload is None:
        message = "body is not a JSON object"
        return Outcome.FAILED, message, _error(400, message)
    if event == "ping":
        return Outcome.IGNORED, "ping", JsonResponse({"status": "pong"})
    if event not in PROCESSED_EVENTS:
        reason = f"the control plane does not use {event} events"
        answer = {"status": "ignored", "event": event}
        return Outcome.IGNORED, reason, JsonResponse(answer, status=202)
    if event not in _FLAT_EVENTS and not isinstance(payload.get(event), dict):
        message = f"payload has no {event} object"
        return Outcome.FAILED, message, _error(400, message)
    reason = out_of_scope(event, payload)
    if reason:
        answer = {"status": "ignored", "reason": reason}
        return Outcome.IGNORED, reason, JsonResponse(answer, status=202)
    return Outcome.PENDING, "", JsonResponse({"status": "accepted"}, status=202)


def _store(
    delivery_id: str,
    event: str,
    payload: dict[str, Any] | None,
    outcome: str,
    why: str,
) -> WebhookDelivery | None:
    """Store the delivery once; None when its id was stored before (a redelivery)."""
    Outcome = WebhookDelivery.Outcome
    repository = (payload or {}).get("repository")
    if not isinstance(repository, dict):
        repository = {}
    try:
        with transaction.atomic():
            return WebhookDelivery.objects.create(
                delivery_id=delivery_id,
                event=event[:50],
                action=str((payload or {}).get("action") or "")[:50],
                payload=payload,
                outcome=outcome,
                reason="" if outcome == Outcome.FAILED else why[:500],
                error=why[:500] if outcome == Outcome.FAILED else "",
                repository=str(repository.get("full_name") or "")[:200],
                # Decided here already: nothing is left to process.
                processed_at=None if outcome == Outcome.PENDING else timezone.now(),
            )
    except IntegrityError:
        return None


@csrf_exempt
@login_not_required
@require_POST
def receive(request: HttpRequest) -> HttpResponse:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error(400, "Content-Length is not a number")
    if length > MAX_BODY_BYTES:
        return _error(413, f"payload larger than {MAX_BODY_BYTES} bytes")
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _error(413, f"payload larger than {MAX_BODY_BYTES} bytes")
    signature = request.headers.get("X-Hub-Signature-256", "")
    if not signature:
        log.warning("webhook rejected: no X-Hub-Signature-256 header")
        REJECTED.labels(reason="missing_signature").inc()
        return _error(401, "missing X-Hub-Signature-256 header")
    if not signature_is_valid(settings.GITHUB_WEBHOOK_SECRET, body, signature):
        log.warning("webhook rejected: signature does not match")
        REJECTED.labels(reason="bad_signature").inc()
        return _error(401, "X-Hub-Signature-256 does not match the body")
    event = request.headers.get("X-GitHub-Event", "")
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    if not event:
        return _error(400, "missing X-GitHub-Event header")
    if not _DELIVERY_ID.match(delivery_id):
        return _error(400, "X-GitHub-Delivery must be a delivery id (a UUID)")
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        parsed = None
    payload = parsed if isinstance(parsed, dict) else None
    outcome, why, answer = _verdict(event, payload)

    from deploys.tasks import process_webhook

    with transaction.atomic():
        delivery = _store(delivery_id, event, payload, outcome, why)
        if delivery is None:
            return JsonResponse({"status": "duplicate"})
        if outcome == WebhookDelivery.Outcome.PENDING:
            transaction.on_commit(lambda: process_webhook.delay(delivery.pk))
    return answer
