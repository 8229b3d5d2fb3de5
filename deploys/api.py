"""``/api/v1/environments/`` and ``/api/v1/deploys/``: deploy targets and runs."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, OuterRef, QuerySet, Subquery
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from controlplane import audit
from controlplane.permissions import IsAdmin, IsSRE, IsViewer, ReadOnly
from deploys.filters import DeployRunFilterSet
from deploys.models import DeployAttempt, DeployRun, Environment
from deploys.secrets_api import SecretScheduleViewSet
from deploys.serializers import (
    CancelSerializer,
    DeployErrorSerializer,
    DeployRequestSerializer,
    DeployRunDetailSerializer,
    DeployRunSerializer,
    EnvironmentSerializer,
    RedeploySerializer,
)
from deploys.triggers import DeployRequestError, redeploy_last_good, request_deploy

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Retry safely: the same key and body give the same deploy (kept for good, "
        "scoped to the caller); the same key with another body is refused (422)."
    ),
)


class EnvironmentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet[Environment],
):
    """Deploy targets with their ordered runner pools and safeguards. SREs read,
    admins write (audited). Environments are never deleted: their deploys are the
    history."""

    queryset = Environment.objects.order_by("name", "pk")
    serializer_class = EnvironmentSerializer
    permission_classes = [IsSRE & ReadOnly | IsAdmin]
    lookup_field = "name"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    filter_backends: list[Any] = []

    def perform_create(
        self, serializer: serializers.BaseSerializer[Environment]
    ) -> None:
        env = serializer.save()
        audit.record(self.request.user, "environment.create", env)

    def perform_update(
        self, serializer: serializers.BaseSerializer[Environment]
    ) -> None:
        env = serializer.save()
        audit.record(
            self.request.user,
            "environment.update",
            env,
            fields=sorted(serializer.validated_data),
        )


def _refusal(exc: DeployRequestError) -> Response:
    if exc.status == status.HTTP_400_BAD_REQUEST and exc.field:
        return Response({exc.field: [exc.message]}, status=exc.status)
    return Response(
        {"detail": exc.message, "code": exc.code, "field": exc.field},
        status=exc.status,
    )


class DeployRunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[DeployRun],
):
    """Deploy runs, newest first. Viewers read; SREs request and cancel."""

    queryset = DeployRun.objects.order_by("-created_at", "-pk")
    serializer_class = DeployRunSerializer
    filterset_class = DeployRunFilterSet
    permission_classes = [IsViewer & ReadOnly | IsSRE]
    ordering_fields = ["created_at", "finished_at"]
    ordering = ["-created_at", "-pk"]

    def get_queryset(self) -> QuerySet[DeployRun]:
        latest = DeployAttempt.objects.filter(run=OuterRef("pk")).order_by("-number")
        queryset = (
            super()
            .get_queryset()
            .select_related("environment")
            .annotate(
                attempt_count=Count("attempts", distinct=True),
                runner=Subquery(latest.values("runner__name")[:1]),
            )
        )
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("attempts__runner", "events__attempt")
        return queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer[DeployRun]]:
        if self.action in ("retrieve", "create", "cancel", "redeploy_last_good"):
            return DeployRunDetailSerializer
        return DeployRunSerializer

    @extend_schema(
        request=DeployRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: DeployRunDetailSerializer,
            409: OpenApiResponse(
                DeployErrorSerializer,
                description="Refused: the environment is paused, one is already "
                "running (reject policy), or the key's first request is in flight.",
            ),
            422: OpenApiResponse(
                DeployErrorSerializer,
                description="The Idempotency-Key was used with another body.",
            ),
        },
    )
    def create(self, request: Request) -> Response:
        """Request a deploy: queued at once, started when the environment is free
        (202). A replay of an idempotent request answers with the same deploy and
        ``Idempotent-Replayed: true``."""
        body = DeployRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = request_deploy(
                request.user,
                body.validated_data["environment"],
                body.validated_data.get("ref", ""),
                body.validated_data.get("change_ticket", ""),
                request.headers.get("Idempotency-Key", ""),
                body.validated_data.get("break_glass_reason", ""),
            )
        except DeployRequestError as exc:
            return _refusal(exc)
        response = self._detail(result.run.pk)
        if not result.created:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(
        request=RedeploySerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: DeployRunDetailSerializer,
            409: OpenApiResponse(
                DeployErrorSerializer,
                description="Refused by the environment's safeguards.",
            ),
            422: OpenApiResponse(
                DeployErrorSerializer,
                description="The Idempotency-Key was used with another body.",
            ),
        },
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="redeploy-last-good",
        permission_classes=[IsSRE],
    )
    def redeploy_last_good(self, request: Request) -> Response:
        """Deploy the environment's last succeeded ref again, through the same gates
        (202)."""
        body = RedeploySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = redeploy_last_good(
                request.user,
                body.validated_data["environment"],
                request.headers.get("Idempotency-Key", ""),
                body.validated_data.get("break_glass_reason", ""),
            )
        except DeployRequestError as exc:
            return _refusal(exc)
        response = self._detail(result.run.pk)
        if not result.created:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(
        request=CancelSerializer,
        responses={
            202: DeployRunDetailSerializer,
            409: OpenApiResponse(
                DeployErrorSerializer, description="The deploy already finished."
            ),
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[IsSRE])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel the deploy and its GitHub run (audited). Cancelling a cancelled
        deploy again is accepted and changes nothing."""
        run = self.get_object()
        body = CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not run.cancel(request.user, body.validated_data.get("note", "")):
            if run.state != DeployRun.State.CANCELLED:
                return Response(
                    {
                        "detail": f"the deploy already {run.state}",
                        "code": "finished",
                        "field": "",
                    },
                    status=status.HTTP_409_CONFLICT,
                )
        return self._detail(run.pk)

    def _detail(self, pk: int) -> Response:
        self.action = "retrieve"
        run = self.get_queryset().get(pk=pk)
        data = DeployRunDetailSerializer(
            run, context=self.get_serializer_context()
        ).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


router = SimpleRouter(trailing_slash=True)
router.register("environments", EnvironmentViewSet, basename="environment")
router.register("deploys", DeployRunViewSet, basename="deploy")
router.register("secret-schedules", SecretScheduleViewSet, basename="secret-schedule")
