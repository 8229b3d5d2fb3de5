"""``/api/v1/stale-runners/``: runners proposed for removal (GitHub has reported
them offline for ``RUNNER_STALE_AFTER_DAYS``), and removing one
(``runners.retention``)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.permissions import IsSRE, IsViewer
from runners import retention
from runners.models import Runner
from runners.serializers import PoolPlaceSerializer


class StaleRunnerSerializer(serializers.Serializer[Any]):
    """A runner proposed for removal, why, and when GitHub removes it."""

    name = serializers.CharField(source="runner.name")
    offline_since = serializers.DateTimeField(
        source="runner.offline_since",
        help_text="When the GitHub sync first saw the runner offline.",
    )
    reason = serializers.CharField()
    github_removes_by = serializers.DateTimeField(
        help_text="GitHub removes runners offline for 14 days: by this time at the "
        "latest."
    )
    pools = serializers.SerializerMethodField()
    removable = serializers.BooleanField(
        help_text="False while the runner is in an environment's pool: take it out "
        "of the pool first."
    )
    last_heartbeat_at = serializers.DateTimeField(
        source="runner.last_heartbeat_at", allow_null=True
    )

    @extend_schema_field(PoolPlaceSerializer(many=True))
    def get_pools(self, item: retention.StaleRunner) -> list[dict[str, Any]]:
        return [
            {"environment": environment, "position": position}
            for environment, position in item.pools
        ]


class RemovedSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    removed_at = serializers.DateTimeField()


class StaleRunnerViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[Runner]):
    """Runners GitHub has reported offline for long, longest first. Nothing is
    removed automatically: an SRE removes each with ``remove``."""

    serializer_class = StaleRunnerSerializer
    permission_classes = [IsViewer]
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Runner]:
        return retention.stale_queryset(timezone.now())

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        now = timezone.now()
        page = self.paginate_queryset(self.get_queryset())
        items = [retention.describe(runner, now) for runner in page or []]
        return self.get_paginated_response(StaleRunnerSerializer(items, many=True).data)

    @extend_schema(
        request=None,
        responses={
            200: RemovedSerializer,
            404: OpenApiResponse(description="No runner has this name."),
            409: OpenApiResponse(
                description="Refused: the runner is in an environment's pool, is not "
                "offline in GitHub, or is already removed (the detail says which)."
            ),
            502: OpenApiResponse(description="GitHub did not remove the runner."),
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def remove(self, request: Request, name: str) -> Response:
        """Remove the runner from GitHub and mark it removed here, keeping its
        history (audited). Never for a runner in a pool."""
        runner = get_object_or_404(Runner, name=name)
        try:
            retention.remove(runner, request.user, timezone.now())
        except retention.RemovalRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except retention.RemovalFailed as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_502_BAD_GATEWAY)
        body = RemovedSerializer({"name": runner.name, "removed_at": runner.removed_at})
        return Response(body.data)
