"""``/api/v1/inventory/``: the inventory in force and its drift (viewers), and
loading a new inventory (admins, audited ``inventory.load``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from controlplane import audit
from controlplane.models import AuditEvent
from controlplane.permissions import IsAdmin, IsViewer
from inventory import drift
from inventory.hosts import InventoryError
from inventory.loading import load_text
from inventory.models import InventoryLoad
from inventory.serializers import InventoryLoadSerializer, InventoryUploadSerializer


class InventoryViewSet(viewsets.GenericViewSet[InventoryLoad]):
    """The intended inventory: what is in force, how the registry drifts from it,
    and loading a new one."""

    queryset = InventoryLoad.objects.order_by("-loaded_at", "-pk")
    serializer_class = InventoryUploadSerializer
    filter_backends: list[Any] = []
    pagination_class = None

    def get_permissions(self) -> list[Any]:
        return [IsAdmin()] if self.action == "create" else [IsViewer()]

    @extend_schema(responses={200: OpenApiResponse(description="The drift report.")})
    def list(self, request: Request) -> Response:
        """The inventory in force (null before the first load) and the runners
        that drift from it: rogue, missing, labels_differ."""
        return Response(report())

    @extend_schema(
        request=InventoryUploadSerializer,
        responses={
            201: OpenApiResponse(description="Loaded: the drift report against it."),
            400: OpenApiResponse(
                description="The inventory cannot be read: the message names the "
                "line and what to fix. Nothing was replaced."
            ),
        },
    )
    def create(self, request: Request) -> Response:
        """Load an inventory (Ansible INI or YAML, or a list of runner names) and
        make it the one in force. A refused one replaces nothing."""
        upload = InventoryUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        try:
            load_text(
                data["content"],
                data["format"],
                source=InventoryLoad.Source.API,
                actor=request.user,
                filename=data["filename"],
            )
        except InventoryError as exc:
            audit.record(
                request.user,
                "inventory.load",
                outcome=AuditEvent.Outcome.FAILURE,
                source=InventoryLoad.Source.API,
                error=str(exc)[:500],
            )
            return Response(
                {"content": [str(exc)], "line": exc.line},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(report(), status=status.HTTP_201_CREATED)


def report() -> dict[str, Any]:
    found = drift.compute()
    if found is None:
        return {"inventory": None, "counts": {}, **{kind: [] for kind in drift.KINDS}}
    return {
        "inventory": {
            **InventoryLoadSerializer(found.load).data,
            "expected": found.expected,
        },
        "counts": found.counts(),
        "rogue": [
            {"runner": r.name, "labels": r.labels, "first_seen_at": r.first_seen_at}
            for r in found.rogue
        ],
        "missing": [
            {
                "runner": m.name,
                "host": m.host,
                "groups": m.groups,
                "line": m.line,
                "status": m.status,
                "removed_at": m.removed_at,
            }
            for m in found.missing
        ],
        "labels_differ": [
            {
                "runner": d.name,
                "host": d.host,
                "expected": d.expected,
                "actual": d.actual,
                "absent": d.absent,
                "unexpected": d.unexpected,
            }
            for d in found.labels
        ],
    }


router = SimpleRouter(trailing_slash=True)
router.register("inventory", InventoryViewSet, basename="inventory")
