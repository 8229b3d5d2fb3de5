"""Inventory drift metrics for /metrics, counted in the database at scrape time
(``inventory.drift.summarize``: two queries whatever the fleet's size),
registered from ``InventoryConfig.ready()``.

With no inventory loaded the drift families are absent (nothing to compare with),
so the drift alerts stay quiet; ``controlplane_inventory_loaded`` says which."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from controlplane import metrics
from inventory import conf, drift
from inventory.models import InventoryLoad


class InventoryCollector:
    name = "inventory"

    def collect(self) -> Iterable[Metric]:
        found = drift.summarize()
        yield GaugeMetricFamily(
            "controlplane_inventory_loaded",
            "1 when an intended inventory is in force, 0 before the first load.",
            value=0 if found is None else 1,
        )
        if conf.path():
            yield GaugeMetricFamily(
                "controlplane_inventory_file_error",
                "1 when the INVENTORY_PATH file's current content was refused (the "
                "previous inventory stays in force), else 0.",
                value=1 if file_refused() else 0,
            )
        if found is None:
            return
        yield GaugeMetricFamily(
            "controlplane_inventory_expected_runners",
            "Runners the inventory in force expects.",
            value=found.expected,
        )
        yield GaugeMetricFamily(
            "controlplane_inventory_loaded_timestamp_seconds",
            "When the inventory in force was loaded (Unix time).",
            value=found.load.loaded_at.timestamp(),
        )
        family = GaugeMetricFamily(
            "controlplane_inventory_drift_runners",
            "Runners drifting from the inventory, by kind: rogue (registered in "
            "GitHub, not in the inventory), missing (in the inventory, not "
            "registered), labels_differ (labels not the inventory's).",
            labels=["kind"],
        )
        for kind, count in found.counts.items():
            family.add_metric([kind], count)
        yield family


def file_refused() -> bool:
    """Whether the INVENTORY_PATH file's latest load was refused."""
    last = (
        InventoryLoad.objects.filter(
            source=InventoryLoad.Source.FILE, filename=conf.path()
        )
        .order_by("-loaded_at", "-pk")
        .values_list("accepted", flat=True)
        .first()
    )
    return last is False


metrics.register(InventoryCollector())
