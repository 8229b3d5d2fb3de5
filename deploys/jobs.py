"""Turning stored webhook deliveries into workflow job records."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deploys import engine, protection
from deploys.jobrecords import record_job
from deploys.models import (
    CORRELATION_TOKEN,
    DeployAttempt,
    WebhookDelivery,
    WebhookRedelivery,
)

log = logging.getLogger(__name__)

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
    elif delivery.event == "deployment_status":
        attempt = _apply_deployment_status(delivery, payload)
    elif delivery.event == protection.EVENT:
        request = protection.parse(payload)
        delivery.github_run_id = request.run_id
        delivery.outcome = Outcome.MATCHED
        # GitHub holds the job until the answer: send it as soon as this commits.
        pk = delivery.pk
        transaction.on_commit(lambda: protection.answer(pk))
    else:
        delivery.outcome = Outcome.IGNORED
        delivery.reason = f"the control plane does not use {delivery.event} events"
    if attempt is not None:
        delivery.deploy_run_id = attempt.run_id
        _note_webhook(attempt, delivery.event, payload)
        # The deploy watching this run acts on what the payload said at once, with
        # no GitHub call (the jobs are recorded above; see engine.common).
        engine.wake_for_github_run(delivery.github_run_id or 0)


def _apply_deployment_status(
    delivery: WebhookDelivery, payload: dict[str, Any]
) -> DeployAttempt | None:
    """A GitHub deployment of a deploy's run changed state (queued, in_progress,
    success, failure, ...): matched through the run that created it."""
    Outcome = WebhookDelivery.Outcome
    status = payload["deployment_status"]
    deployment = payload["deployment"]
    run = payload.get("workflow_run")
    str(status["state"])  # a status without a state is malformed
    int(deployment["id"])
    if not isinstance(run, dict):
        delivery.outcome = Outcome.UNMATCHED
        delivery.reason = (
            f"deployment {deployment['id']} was not created by a workflow run"
        )
        return None
    delivery.github_run_id = int(run["id"])
    attempt = _attempt_of(delivery.github_run_id)
    if attempt is None:
        delivery.outcome = Outcome.UNMATCHED
        delivery.reason = (
            f"run {delivery.github_run_id} is not a deploy of this control plane"
        )
        return None
    delivery.outcome = Outcome.MATCHED
    return attempt


def _note_webhook(attempt: DeployAttempt, event: str, payload: dict[str, Any]) -> None:
    """Record on the attempt that a webhook spoke of its run, and what it said of
    the run or its deployment (job facts live in the job records)."""
    mine = DeployAttempt.objects.filter(pk=attempt.pk)
    fields: dict[str, Any] = {"webhook_seen_at": timezone.now()}
    if event == "workflow_run":
        run = payload["workflow_run"]
        status = str(run.get("status") or "")[:20]
        if status != "completed":
            # Out of order: a late "requested" never reopens a completed run.
            mine = mine.exclude(github_run_status="completed")
        fields["github_run_status"] = status
        fields["github_run_conclusion"] = str(run.get("conclusion") or "")[:20]
    elif event == "deployment_status":
        fields["github_deployment_id"] = int(payload["deployment"]["id"])
        state = str(payload["deployment_status"]["state"])[:20]
        fields["github_deployment_state"] = state
    if not mine.update(**fields):
        DeployAttempt.objects.filter(pk=attempt.pk).update(
            webhook_seen_at=fields["webhook_seen_at"]
        )


def _attempt_of(github_run_id: int) -> DeployAttempt | None:
    return (
        DeployAttempt.objects.filter(github_run_id=github_run_id)
        .only("pk", "run_id")
        .first()
    )


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
