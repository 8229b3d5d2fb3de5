"""The inventory drift page: the inventory in force, where it came from, and the
runners that drift from it (rogue, missing, labels differ)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from controlplane.permissions import role_required
from controlplane.roles import Role, has_role
from inventory import conf, drift
from inventory.metrics import file_refused
from inventory.models import InventoryLoad

RECENT_LOADS = 10
# Rows shown per kind: a wrong inventory can make the whole fleet drift, and the
# API lists them all.
SHOWN = 500


@require_GET
@role_required(Role.VIEWER)
def drift_page(request: HttpRequest) -> HttpResponse:
    found = drift.compute()
    fleet = reverse("runners:fleet")
    refused = (
        InventoryLoad.objects.filter(
            source=InventoryLoad.Source.FILE, filename=conf.path(), accepted=False
        )
        .order_by("-loaded_at", "-pk")
        .first()
        if conf.path() and file_refused()
        else None
    )
    ctx: dict[str, Any] = {
        "drift": found,
        "counts": found.counts() if found is not None else {},
        "kind_labels": drift.KIND_LABELS,
        "inventory_path": conf.path(),
        "refused": refused,
        "recent": InventoryLoad.objects.select_related("loaded_by")[:RECENT_LOADS],
        "can_load": has_role(request.user, Role.ADMIN),
        "rules": {
            "runner_var": conf.runner_var(),
            "labels_var": conf.labels_var(),
            "group": conf.runner_group(),
        },
    }
    if found is not None:
        ctx["rogue"] = [
            (r, f"{fleet}{quote(r.name, safe='')}/") for r in found.rogue[:SHOWN]
        ]
        ctx["missing"] = found.missing[:SHOWN]
        ctx["differ"] = [
            (d, f"{fleet}{quote(d.name, safe='')}/") for d in found.labels[:SHOWN]
        ]
        ctx["hidden"] = {
            kind: max(0, count - SHOWN) for kind, count in found.counts().items()
        }
    return render(request, "inventory/drift.html", ctx)
