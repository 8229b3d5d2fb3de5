"""Deploy work on the ``deploys`` queue."""

from __future__ import annotations

from celery import shared_task

from deploys import jobs


@shared_task
def process_webhook(delivery_id: int) -> None:
    jobs.process_delivery(delivery_id)


@shared_task
def process_pending_webhooks() -> None:
    """Beat: process deliveries whose message was lost (broker restart, killed worker)."""
    jobs.process_pending()
