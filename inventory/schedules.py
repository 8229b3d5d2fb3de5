"""The inventory's periodic task (``controlplane.schedules``), on the ``health`` queue."""

from __future__ import annotations

from controlplane.schedules import Schedule

SCHEDULES = (
    Schedule(
        name="Inventory file watch",
        task="inventory.tasks.watch_inventory_file",
        every=60,
        queue="health",
        expire_seconds=60,
        description=(
            "Re-reads the INVENTORY_PATH file and loads it when its content changed "
            "(a file that cannot be read is recorded as refused; the inventory in "
            "force stays). Does nothing when INVENTORY_PATH is empty."
        ),
    ),
)
