"""Turning stored webhook deliveries into workflow job records."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deploys import engine
from deploys.models import (
    CORRELATION_TOKEN,
    DeployAttempt,
    WebhookDelivery,
    WebhookRedelivery,
    WorkflowJob,
)
from runners.models import Runner

log = logging.getLogger(__name__)

# Webhooks arrive in any order: never let an older event move a job backwards.
_STATUS_RANK = {"queued": 0, "waiting": 0, "in_progress": 1, "completed": 2}
# A delivery older than this and still unprocessed lost its queue message.
PENDING_GRACE = timedelta(seconds=30)


def process_delivery(delivery_id: int) -> bool:
    """Apply one delivery, exactly once. Returns False when it was already applied.

    The delivery row is locked and given its outcome in the same transaction as its
    effects, so a worker killed half-way leaves it pending for the next try. A
    payload whose shape is wrong is marked failed with its error at once: trying it
    again could not help.
    """
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(pk=delivery_id, processed_at__isnull=True)
            .first()
        )
        if delivery is None:
            return False
        try:
            with transaction.atomic():
                _apply(delivery)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            delivery.outcome = WebhookDelivery.Outcome.FAILED
            delivery.error = f"{type(exc).__name__}: {exc}"[:500]
            delivery.deploy_run = None
        delivery.processed_at = timezone.now()
        delivery.save(
            update_fields=[
                "processed_at",
                "outcome",
                "reason",
                "error",
                "github_run_id",
                "deploy_run",
            ]
        )
    return True


def _apply(delivery: WebhookDelivery) -> None:
    """Apply the delivery's effects and set its outcome (not saved here)."""
    payload = delivery.payload or {}
    Outcome = WebhookDelivery.Outcome
    attempt: DeployAttempt | None = None
    if delivery.event == "workflow_job":
        record, runner_known = record_job(payload["workflow_job"])
        delivery.github_run_id = record.run_id
        attempt = _attempt_of(record.run_id)
        if attempt is not None or runner_known:
            delivery.outcome = Outcome.MATCHED
        else:
            delivery.outcome = Outcome.UNMATCHED
            delivery.reason = (
                f"run {record.run_id} is not a deploy and its job names no "
                "registered runner"
            )
    elif delivery.event == "workflow_run":
        run = payload["workflow_run"]
        github_run_id = int(run["id"])
        delivery.github_run_id = github_run_id
        token = CORRELATION_TOKEN.search(
            f"{run.get('display_title') or ''} {run.get('name') or ''}"
        )
        if token is not None:
            # The run-name carries a dispatching attempt's token: record its run
            # now instead of waiting for the lost-answer lookup's grace.
            engine.match_run_by_token(
                token.group(0), github_run_id, str(run.get("html_url") or "")
            )
        attempt = _attempt_of(github_run_id)
        if attempt is not None:
            delivery.outcome = Outcome.MATCHED
        else:
            delivery.outcome = Outcome.UNMATCHED
            delivery.reason = (
                f"run {github_run_id} is not a deploy of this control plane"
            )
    else:
        delivery.outcome = Outcome.IGNORED
        delivery.reason = f"the control plane does not use {delivery.event} events"
    if attempt is not None:
        delivery.deploy_run_id = attempt.run_id
        # The deploy watching this run looks at once instead of at its next poll.
        engine.wake_for_github_run(delivery.github_run_id or 0)


def _attempt_of(github_run_id: int) -> DeployAttempt | None:
    return (
        DeployAttempt.objects.filter(github_run_id=github_run_id)
        .only("pk", "run_id")
        .first()
    )


def record_job(job: dict[str, Any]) -> tuple[WorkflowJob, bool]:
    """Upsert a workflow job from a webhook (or poll) and note its runner's busy state.

    Returns the job and whether it names a registered runner (its runner, or for a
    queued job a runner whose name is one of its labels).
    """
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
        known = Runner.objects.filter(name=record.runner_name).update(
            github_busy=record.status == WorkflowJob.Status.IN_PROGRESS
        )
        return record, bool(known)
    labels = [str(label) for label in record.labels or ()]
    return record, Runner.objects.filter(name__in=labels).exists()


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
            WebhookDelivery.objects.filter(pk=pk, processed_at__isnull=True).update(
                processed_at=timezone.now(),
                outcome=WebhookDelivery.Outcome.FAILED,
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
    return done


def prune_deliveries(now: datetime | None = None, *, batch: int = 5_000) -> int:
    """Delete deliveries older than ``WEBHOOK_RETENTION_DAYS`` in bounded batches,
    and redelivery records past GitHub's window; returns the deliveries deleted."""
    now = now or timezone.now()
    old = WebhookDelivery.objects.older_than(
        now - timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    )
    deleted = 0
    while True:
        pks = list(old.order_by("pk").values_list("pk", flat=True)[:batch])
        if not pks:
            break
        deleted += WebhookDelivery.objects.filter(pk__in=pks).delete()[0]
    WebhookRedelivery.objects.filter(
        last_requested_at__lt=now - timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    ).delete()
    return deleted
