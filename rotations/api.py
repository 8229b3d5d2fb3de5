"""``/api/v1/secret-schedules/``: rotation schedules, their history, the audit
against GitHub, the import of schedules for secrets GitHub has, and rotation.

Viewers read schedules and history; SREs run the audit; admins edit schedules,
import and rotate. The rotate body's ``value`` is write-only: it is sealed and sent
to GitHub inside the request and appears in no response, log or row.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from controlplane import audit
from controlplane.pagination import Pagination
from controlplane.permissions import IsAdmin, IsSRE, IsViewer, ReadOnly
from rotations import domain
from rotations.models import SecretRotationSchedule
from rotations.serializers import (
    AuditReportSerializer,
    ImportResultSerializer,
    ImportSerializer,
    ProposalsSerializer,
    RotateErrorSerializer,
    RotateSerializer,
    SecretRotationSerializer,
    SecretScheduleSerializer,
)


class SecretScheduleViewSet(viewsets.ModelViewSet[SecretRotationSchedule]):
    """Secret rotation schedules, most urgent first (overdue, missing, due soon)."""

    queryset = SecretRotationSchedule.objects.all()
    serializer_class = SecretScheduleSerializer
    permission_classes = [IsViewer & ReadOnly | IsAdmin]
    filter_backends: list[Any] = []
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet[SecretRotationSchedule]:
        return (
            SecretRotationSchedule.objects.by_urgency(timezone.now())
            .select_related("environment")
            .prefetch_related("required_by")
        )

    def perform_create(
        self, serializer: serializers.BaseSerializer[SecretRotationSchedule]
    ) -> None:
        schedule = serializer.save()
        audit.record(self.request.user, "secret_schedule.create", schedule)

    def perform_update(
        self, serializer: serializers.BaseSerializer[SecretRotationSchedule]
    ) -> None:
        schedule = serializer.save()
        audit.record(
            self.request.user,
            "secret_schedule.update",
            schedule,
            fields=sorted(serializer.validated_data),
        )

    def perform_destroy(self, instance: SecretRotationSchedule) -> None:
        audit.record(self.request.user, "secret_schedule.delete", instance)
        instance.delete()

    @extend_schema(request=None, responses=SecretRotationSerializer(many=True))
    @action(
        detail=True, methods=["get"], permission_classes=[IsViewer], filter_backends=[]
    )
    def rotations(self, request: Request, pk: str) -> Response:
        """The schedule's rotation history, newest first."""
        schedule = self.get_object()
        rows = schedule.rotations.order_by("-rotated_at", "-pk")
        paginator = Pagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(
            SecretRotationSerializer(page, many=True).data
        )

    @extend_schema(
        request=RotateSerializer,
        responses={
            200: SecretRotationSerializer,
            502: OpenApiResponse(
                RotateErrorSerializer,
                description="GitHub refused or failed: nothing was recorded as "
                "rotated.",
            ),
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[IsAdmin])
    @sensitive_variables("body", "value")
    def rotate(self, request: Request, pk: str) -> Response:
        """Put a new value into GitHub, sealed with a freshly fetched public key,
        and record the rotation (audited). The value is never returned or stored."""
        # Error reports (Django's technical 500 page too) must not show the value.
        domain.protect_request(request._request)
        schedule = self.get_object()
        body = RotateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # A configuration or data problem here, not a GitHub failure (a 502).
        problem = schedule.target_problem()
        if problem is not None:
            raise serializers.ValidationError(problem)
        value = body.validated_data.get("value") or domain.generate_value()
        try:
            rotation = domain.rotate(schedule, value, request.user)
        except domain.RotationRefused as exc:
            return Response(
                {"detail": str(exc), "github_status": exc.status},
                status=status.HTTP_502_BAD_GATEWAY,
            )
        return Response(SecretRotationSerializer(rotation).data)

    @extend_schema(request=None, responses=AuditReportSerializer)
    @action(detail=False, methods=["post"], permission_classes=[IsSRE])
    def audit(self, request: Request) -> Response:
        """Check every schedule against GitHub now (audited)."""
        report = domain.audit_schedules(actor=request.user)
        return Response(report.as_dict())

    @extend_schema(request=None, responses=ProposalsSerializer)
    @action(
        detail=False,
        methods=["get"],
        url_path="import-proposals",
        permission_classes=[IsAdmin],
    )
    def import_proposals(self, request: Request) -> Response:
        """Secrets GitHub has that no schedule covers; confirm with import/."""
        proposals, errors = domain.propose_schedules()
        data = [
            {
                "key": p.key,
                "name": p.name,
                "scope": p.scope,
                "environment": p.environment,
                "repository": p.repository,
                "updated_at": p.updated_at,
            }
            for p in proposals
        ]
        return Response({"proposals": data, "failed_targets": errors})

    @extend_schema(
        request=ImportSerializer,
        responses={201: ImportResultSerializer},
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        permission_classes=[IsAdmin],
    )
    def import_schedules(self, request: Request) -> Response:
        """Create schedules (default intervals) for the confirmed proposals."""
        body = ImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        created = domain.import_schedules(request.user, body.validated_data["keys"])
        data = SecretScheduleSerializer(
            created, many=True, context=self.get_serializer_context()
        ).data
        return Response({"created": data}, status=status.HTTP_201_CREATED)


router = SimpleRouter(trailing_slash=True)
router.register("secret-schedules", SecretScheduleViewSet, basename="secret-schedule")
