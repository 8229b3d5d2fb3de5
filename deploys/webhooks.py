"""The GitHub webhook receiver: verify, store, enqueue, answer.

GitHub waits at most 10 seconds and never redelivers by itself, so the view does no
processing: it checks the signature over the raw body, stores the delivery once
(deduplicated on ``X-GitHub-Delivery``) and enqueues the work after commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from prometheus_client import Counter

from deploys.models import WebhookDelivery

log = logging.getLogger(__name__)

# GitHub caps payloads at 25 MB; workflow events are a few KB. Anything this big is
# not a workflow event from GitHub.
MAX_BODY_BYTES = 1024 * 1024
PROCESSED_EVENTS = frozenset({"workflow_job", "workflow_run"})
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
    if event == "ping":
        return JsonResponse({"status": "pong"})
    if event not in PROCESSED_EVENTS:
        return JsonResponse({"status": "ignored", "event": event}, status=202)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _error(400, "body is not JSON")
    if not isinstance(payload, dict) or not isinstance(payload.get(event), dict):
        return _error(400, f"payload has no {event} object")

    from deploys.tasks import process_webhook

    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                delivery_id=delivery_id,
                event=event,
                action=str(payload.get("action", ""))[:50],
                payload=payload,
            )
            transaction.on_commit(lambda: process_webhook.delay(delivery.pk))
    except IntegrityError:
        return JsonResponse({"status": "duplicate"})
    return JsonResponse({"status": "accepted"}, status=202)
