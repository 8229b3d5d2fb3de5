"""Inventory tasks: the periodic watch of the INVENTORY_PATH file."""

from __future__ import annotations

from celery import shared_task

from controlplane.tasks import tracked
from inventory import loading


@shared_task(ignore_result=True)
def watch_inventory_file() -> None:
    """Load INVENTORY_PATH when its content changed (every minute)."""
    with tracked("inventory_file"):
        loading.load_file()
