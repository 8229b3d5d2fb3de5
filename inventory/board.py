"""The inventory's panel on the home page's status board: drift counts by kind,
and the inventory alert rules whose condition holds."""

from __future__ import annotations

from datetime import datetime

from django.urls import reverse

from controlplane.board import OpenAlert, PanelData
from inventory import conf, drift
from inventory.metrics import file_refused

# The alert rules of monitoring/prometheus/alerts.yml, by drift kind.
RULES = {
    "rogue": ("InventoryRogueRunners", "inventory-rogue-runners"),
    "missing": ("InventoryMissingRunners", "inventory-missing-runners"),
    "labels_differ": ("InventoryLabelsDiffer", "inventory-labels-differ"),
}


def inventory_panel(now: datetime) -> PanelData:
    """Three queries: the drift's counts (two, ``drift.summarize``) and, when a
    file is watched, its latest load."""
    url = reverse("inventory:drift")
    found = drift.summarize()
    counts = found.counts if found is not None else {}
    alerts = []
    for kind, count in counts.items():
        if count:
            rule, runbook = RULES[kind]
            alerts.append(
                OpenAlert(
                    rule,
                    "warning",
                    f"{count} runner{'s' if count != 1 else ''} "
                    f"{drift.KIND_LABELS[kind]}",
                    runbook,
                    f"{url}#{kind}",
                )
            )
    refused = bool(conf.path()) and file_refused()
    if refused:
        alerts.append(
            OpenAlert(
                "InventoryFileRefused",
                "warning",
                "The inventory file was refused: the previous inventory stays in force",
                "inventory-file-refused",
                url,
            )
        )
    return PanelData(
        {
            "inventory_url": url,
            "drift": found,
            "kinds": [(k, drift.KIND_LABELS[k], counts.get(k, 0)) for k in drift.KINDS],
            "file_refused": refused,
        },
        alerts,
    )
