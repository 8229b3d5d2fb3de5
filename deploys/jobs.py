"""Turning stored webhook deliveries into workflow job records."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from deploys import engine
from deploys.models import WebhookDelivery, WorkflowJob
from runners.models import Runner

log = logging.getLogger(__name__)

# Webhooks arrive in any order: never let an older event move a job backwards.
_STATUS_RANK = {"queued": 0, "waiting": 0, "in_progress": 1, "completed": 2}
# A delivery older than this and still unprocessed lost its queue message.
PENDING_GRACE = timedelta(seconds=30)


def process_delivery(delivery_id: int) -> bool:
    """Apply one delivery, exactly once. Returns False when it was already applied.

    The delivery row is locked and marked processed in the same transaction as its
    effects, so a worker killed half-way leaves it unprocessed for the next try.
    """
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(pk=delivery_id, processed_at__isnull=True)
            .first()
        )
        if delivery is None:
            return False
        if delivery.event == "workflow_job":
            record = record_job(delivery.payload["workflow_job"])
            # The deploy watching this run looks at once instead of at its next poll.
            engine.wake_for_github_run(record.run_id)
        elif delivery.event == "workflow_run":
            engine.wake_for_github_run(int(delivery.payload["workflow_run"]["id"]))
        delivery.processed_at = timezone.now()
        delivery.save(update_fields=["processed_at"])
    return True


def record_job(job: dict[str, Any]) -> WorkflowJob:
    """Upsert a workflow job from a webhook (or poll) and note its runner's busy state."""
    fields = WorkflowJob.fields_from_payload(job)
    existing = (
        WorkflowJob.objects.select_for_update().filter(github_id=job["id"]).first()
    )
    if existing is None:
        record = WorkflowJob.objects.create(github_id=job["id"], **fields)
    else:
        record = existing
        if _STATUS_RANK.get(fields["status"], 0) >= _STATUS_RANK.get(
            existing.status, 0
        ):
            for name, value in fields.items():
                # A later event can lack what an earlier one had (runner of a job
                # that was cancelled while queued): keep what we know.
                if value not in ("", None, []):
                    setattr(record, name, value)
            record.status = fields["status"]
            record.updated_at = timezone.now()
            record.save()
    if record.runner_name:
        # GitHub's runner list is known to lag on busy; the job events are fresher.
        Runner.objects.filter(name=record.runner_name).update(
            github_busy=record.status == WorkflowJob.Status.IN_PROGRESS
        )
    return record


def process_pending(now: Any = None, *, limit: int = 500) -> int:
    """Process deliveries whose queue message never arrived; returns how many."""
    now = now or timezone.now()
    ids = list(
        WebhookDelivery.objects.filter(
            processed_at__isnull=True, received_at__lt=now - PENDING_GRACE
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )
    done = 0
    for pk in ids:
        try:
            done += process_delivery(pk)
        except Exception as exc:  # one bad delivery must not block the rest
            log.exception("webhook delivery %s failed", pk)
            WebhookDelivery.objects.filter(pk=pk).update(
                processed_at=timezone.now(), error=str(exc)[:500]
            )
    return done
