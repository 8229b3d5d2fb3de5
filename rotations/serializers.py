"""Serializers of the ``/api/v1/secret-schedules/`` API: schedules with their status,
rotations (never a value), the write-only rotate body, audit reports and imports."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from controlplane.serializers import JSONTypesMixin
from deploys.serializers import EnvironmentNameField
from rotations.models import SecretRotation, SecretRotationSchedule, scope_problem

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
    """The proposal keys (from ``import-proposals``) to turn into schedules; a key
    that matches no current proposal is ignored."""

    # Keys are matched as sent: trimming would turn "  " into a blank the schema
    # (minLength 1) allows but DRF then refuses.
    keys = serializers.ListField(
        child=serializers.CharField(max_length=300, trim_whitespace=False),
        max_length=500,
    )


class ImportResultSerializer(serializers.Serializer[None]):
    created = SecretScheduleSerializer(many=True)
