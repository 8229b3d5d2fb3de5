from __future__ import annotations

from django.apps import AppConfig

from controlplane.schedules import register as register_schedules
from inventory.schedules import SCHEDULES


class InventoryConfig(AppConfig):
    name = "inventory"
    verbose_name = "Intended inventory and drift"

    def ready(self) -> None:
        # What the inventory adds to the floor: its /metrics collector (registered
        # on import), its navigation section, its board panel and periodic task.
        from django.urls import reverse

        import inventory.metrics  # noqa: F401
        from controlplane import audit, board, context_processors
        from inventory.board import inventory_panel

        context_processors.register_section("Inventory", "inventory:drift", position=15)
        board.register_panel(
            "inventory",
            "inventory/_board_inventory.html",
            inventory_panel,
            position=35,
        )
        audit.register_target_url(
            "inventory.inventoryload", lambda _, __: reverse("inventory:drift")
        )
        register_schedules(*SCHEDULES)
