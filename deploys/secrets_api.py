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

from controlplane import audit
from controlplane.pagination import Pagination
from controlplane.permissions import IsAdmin, IsSRE, IsViewer, ReadOnly
from controlplane.serializers import JSONTypesMixin
from deploys import secrets
from deploys.secret_models import (
    SecretRotation,
    SecretRotationSchedule,
    scope_problem,
)
from deploys.serializers import EnvironmentNameField

# Ten years: longer is a typo, not a rotation policy.
MAX_DAYS = 3650
# GitHub's limit on a secret value.
MAX_VALUE_BYTES = 48 * 1024


class SecretScheduleSerializer(
    JSONTypesMixin, serializers.ModelSerializer[SecretRotationSchedule]
):
    """A rotation schedule with its status as of the request."""

    environment = EnvironmentNameField(
        required=False,
        allow_null=True,
        help_text="GitHub environment of an environment-scoped secret.",
    )
    required_by = EnvironmentNameField(
        many=True,
        required=False,
        help_text="Environments whose deploys wait for this secret.",
    )
    status = serializers.SerializerMethodField()
    days_until_due = serializers.SerializerMethodField()

    class Meta:
        model = SecretRotationSchedule
        fields = [
            "id",
            "name",
            "scope",
            "repository",
            "environment",
            "interval_days",
            "warning_days",
            "owner",
            "notes",
            "required_by",
            "status",
            "days_until_due",
            "last_rotated_at",
            "next_due",
            "present",
            "last_checked_at",
            "last_check_error",
        ]
        read_only_fields = [
            "last_rotated_at",
            "next_due",
            "present",
            "last_checked_at",
            "last_check_error",
        ]
        # validate() checks clashes itself, on the upper-cased name and the scope's
        # real environment; DRF's validators for the model's unique constraints
        # would make every field they name required, against the schema.
        validators: list[Any] = []
        # Bounds on the fields themselves, so the schema documents them.
        extra_kwargs = {
            "interval_days": {"min_value": 1, "max_value": MAX_DAYS},
            "warning_days": {"min_value": 0, "max_value": MAX_DAYS},
        }

    def validate_name(self, value: str) -> str:
        # The model field's GitHub-grammar validator has run already.
        return value.upper()

    def validate_scope(self, value: str) -> str:
        problem = scope_problem(value)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        scope = attrs.get("scope", getattr(self.instance, "scope", "repository"))
        environment = attrs.get(
            "environment", getattr(self.instance, "environment", None)
        )
        if scope == SecretRotationSchedule.Scope.ENVIRONMENT and environment is None:
            raise serializers.ValidationError(
                {"environment": "an environment secret needs its environment"}
            )
        if scope != SecretRotationSchedule.Scope.ENVIRONMENT:
            attrs["environment"] = None
        name = attrs.get("name", getattr(self.instance, "name", ""))
        clash = SecretRotationSchedule.objects.filter(
            name=str(name).upper(),
            scope=scope,
            repository=attrs.get(
                "repository", getattr(self.instance, "repository", "")
            ),
            environment=attrs["environment"] if "environment" in attrs else environment,
        )
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            # "unique": a valid request clashing with what exists, answered 409.
            raise serializers.ValidationError(
                {"name": "a schedule for this secret exists already"}, code="unique"
            )
        return attrs

    def get_status(self, obj: SecretRotationSchedule) -> str:
        return str(obj.status_at(self.context.get("now") or timezone.now()))

    def get_days_until_due(self, obj: SecretRotationSchedule) -> float | None:
        days = obj.days_until_due(self.context.get("now") or timezone.now())
        return None if days is None else round(days, 2)


class SecretRotationSerializer(serializers.ModelSerializer[SecretRotation]):
    """One rotation: who, when, how and the id of the sealing key. Never the value."""

    class Meta:
        model = SecretRotation
        fields = ["id", "rotated_at", "source", "actor_name", "key_id"]
        read_only_fields = fields


class RotateSerializer(JSONTypesMixin, serializers.Serializer[None]):
    """The new value (write-only), or ``generate`` for a strong random one."""

    value = serializers.CharField(
        write_only=True,
        required=False,
        trim_whitespace=False,
        max_length=MAX_VALUE_BYTES,
        style={"input_type": "password"},
        help_text="The new secret value. Write-only: never returned or stored.",
    )
    generate = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Generate a strong random value instead (it is not shown).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_value = bool(attrs.get("value"))
        if has_value == bool(attrs.get("generate")):
            raise serializers.ValidationError(
                {"value": "give a value, or set generate, not both"}
            )
        if has_value and len(attrs["value"].encode()) > MAX_VALUE_BYTES:
            raise serializers.ValidationError({"value": "at most 48 KB"})
        return attrs


class RotateErrorSerializer(serializers.Serializer[None]):
    detail = serializers.CharField()
    github_status = serializers.IntegerField(allow_null=True)


class AuditReportSerializer(serializers.Serializer[None]):
    checked = serializers.IntegerField()
    missing = serializers.ListField(child=serializers.CharField())
    rotated_externally = serializers.ListField(child=serializers.CharField())
    failed_targets = serializers.ListField(child=serializers.CharField())


class ProposalSerializer(serializers.Serializer[None]):
    key = serializers.CharField(help_text="Pass back to import/ to confirm.")
    name = serializers.CharField()
    scope = serializers.CharField()
    environment = serializers.CharField()
    repository = serializers.CharField()
    updated_at = serializers.DateTimeField(allow_null=True)


class ProposalsSerializer(serializers.Serializer[None]):
    proposals = ProposalSerializer(many=True)
    failed_targets = serializers.ListField(child=serializers.CharField())


class ImportSerializer(JSONTypesMixin, serializers.Serializer[None]):
    keys = serializers.ListField(
        child=serializers.CharField(max_length=300), max_length=500
    )


class ImportResultSerializer(serializers.Serializer[None]):
    created = SecretScheduleSerializer(many=True)


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
        secrets.protect_request(request._request)
        schedule = self.get_object()
        body = RotateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        # A configuration or data problem here, not a GitHub failure (a 502).
        problem = schedule.target_problem()
        if problem is not None:
            raise serializers.ValidationError(problem)
        value = body.validated_data.get("value") or secrets.generate_value()
        try:
            rotation = secrets.rotate(schedule, value, request.user)
        except secrets.RotationRefused as exc:
            return Response(
                {"detail": str(exc), "github_status": exc.status},
                status=status.HTTP_502_BAD_GATEWAY,
            )
        return Response(SecretRotationSerializer(rotation).data)

    @extend_schema(request=None, responses=AuditReportSerializer)
    @action(detail=False, methods=["post"], permission_classes=[IsSRE])
    def audit(self, request: Request) -> Response:
        """Check every schedule against GitHub now (audited)."""
        report = secrets.audit_schedules(actor=request.user)
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
        proposals, errors = secrets.propose_schedules()
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
        created = secrets.import_schedules(request.user, body.validated_data["keys"])
        data = SecretScheduleSerializer(
            created, many=True, context=self.get_serializer_context()
        ).data
        return Response({"created": data}, status=status.HTTP_201_CREATED)
