"""Deploy work on the ``deploys`` queue."""

from __future__ import annotations

from celery import shared_task

from controlplane.tasks import tracked
from deploys import engine, jobs, protection, triggers, webhook_recovery


@shared_task
def process_webhook(delivery_id: int) -> None:
    jobs.process_delivery(delivery_id)


@shared_task
def process_pending_webhooks() -> None:
    """Beat: process deliveries whose message was lost (broker restart, killed worker)
    and answer again the protection-rule requests GitHub could not take."""
    jobs.process_pending()
    protection.retry_unanswered()


@shared_task
def recover_webhooks() -> None:
    """Beat, every 5 min: ask GitHub to redeliver the deliveries that failed to reach us."""
    # Tracked so the ControlPlaneTaskStale alert sees recovery stop.
    with tracked("webhook_recovery"):
        webhook_recovery.recover()


@shared_task
def prune_webhook_deliveries() -> None:
    """Beat, hourly: delete webhook deliveries past WEBHOOK_RETENTION_DAYS."""
    jobs.prune_deliveries()


@shared_task
def advance_run(run_id: int) -> None:
    """Take every step a deploy run can take now (safe to run twice)."""
    engine.advance(run_id)


@shared_task
def reconcile_deploys() -> None:
    """Beat, every 2 s: enqueue an advance for each deploy whose deadline passed."""
    # Tracked so the ControlPlaneTaskStale alert sees the reconciler stop.
    with tracked("deploy_reconcile"):
        engine.reconcile()


@shared_task
def prune_idempotency_keys() -> None:
    """Beat, hourly: forget Idempotency-Key records past their retention."""
    triggers.prune_idempotency_records()
