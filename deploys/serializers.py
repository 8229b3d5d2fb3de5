"""API representations of environments, deploy runs, their attempts and events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from controlplane import names as github_names
from controlplane.runbooks import runbook_url
from controlplane.serializers import JSONTypesMixin, OptionalURLField
from deploys import signoff
from deploys.models import (
    MAX_FREEZE_MINUTES,
    DeployAttempt,
    DeployEvent,
    DeployRun,
    Environment,
    FreezeWindow,
)
from deploys.rules_serializers import RULE_FIELDS, DeployRulesSerializerMixin
from deploys.signoff_serializers import SignOffStatusSerializer
from runners.models import Runner


class PoolRunnerSerializer(serializers.Serializer[dict[str, Any]]):
    """One place in the pool with the runner's health right now."""

    position = serializers.IntegerField()
    runner = serializers.CharField()
    state = serializers.CharField()
    eligible = serializers.BooleanField()
    ineligibility_reasons = serializers.ListField(child=serializers.CharField())
    notes = serializers.ListField(
        child=serializers.CharField(),
        help_text="Problems that do not keep the runner out: signals the "
        "environment's policy makes advisory, a trust override at work.",
    )
    trusted = serializers.CharField(
        allow_null=True,
        help_text='The trust override counted for it ("trusted by NAME until '
        'TIME: reason"); null when none.',
    )


class EnvironmentNameField(serializers.SlugRelatedField[Environment]):
    """An environment, by its name. A name with a NUL character is unknown like
    any other: PostgreSQL refuses it in a query, which would be a 500."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("queryset", Environment.objects.all())
        super().__init__(slug_field="name", **kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        # DRF reads "" as null for relations; it names no environment (null does).
        if data == "":
            self.fail("does_not_exist", slug_name=self.slug_field, value=data)
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> Environment:
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data)
        return super().to_internal_value(data)


def _now(serializer: serializers.BaseSerializer[Any]) -> datetime:
    """One "now" per response, shared by the root serializer and its children."""
    context = serializer.context
    now: datetime | None = context.get("now")
    if now is None:
        now = timezone.now()
        if isinstance(context, dict):
            context["now"] = now
    return now


class FreezeWindowSerializer(JSONTypesMixin, serializers.ModelSerializer[FreezeWindow]):
    """A period when deploys to the environment are refused unless an admin breaks
    glass. One-off: ``starts_at`` to ``ends_at``. Weekly, in UTC: from ``weekday``
    (Monday 0) at ``start_time`` for ``duration_minutes`` (past midnight and the
    week's end if need be). The other kind's fields must be empty; changing
    ``kind`` clears them."""

    environment = EnvironmentNameField(help_text="The environment's name.")
    in_force = serializers.SerializerMethodField(
        help_text="Whether the window freezes the environment now."
    )

    class Meta:
        model = FreezeWindow
        fields = [
            "id",
            "environment",
            "kind",
            "reason",
            "starts_at",
            "ends_at",
            "weekday",
            "start_time",
            "duration_minutes",
            "in_force",
        ]
        read_only_fields = ["id"]
        extra_kwargs = {
            "starts_at": {"help_text": "One-off: when the freeze starts."},
            "ends_at": {"help_text": "One-off: when it ends (after starts_at)."},
            "weekday": {
                "min_value": 0,
                "max_value": 6,
                "help_text": "Weekly: the UTC day it starts, Monday 0 to Sunday 6.",
            },
            "start_time": {"help_text": "Weekly: the UTC time it starts."},
            "duration_minutes": {
                "min_value": 1,
                "max_value": MAX_FREEZE_MINUTES,
                "help_text": "Weekly: how long it lasts, 1 minute to 1 week.",
            },
        }

    def get_in_force(self, window: FreezeWindow) -> bool:
        return window.covers(_now(self))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The window's shape (``FreezeWindow.shape_errors``), as the body leaves
        it: fields it leaves out are kept from the window being changed, except
        the other kind's, which are cleared (so a change of kind needs only the new
        kind's fields)."""
        # Required on create, so only a change may leave it out.
        kind = str(attrs.get("kind") or getattr(self.instance, "kind", ""))
        for other, names in FreezeWindow.KIND_FIELDS.items():
            if other != kind:
                attrs.update((name, None) for name in names if name not in attrs)
        shape = {
            name: attrs[name] if name in attrs else getattr(self.instance, name, None)
            for names in FreezeWindow.KIND_FIELDS.values()
            for name in names
        }
        errors = FreezeWindow(kind=kind, **shape).shape_errors()
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class EnvironmentSerializer(
    DeployRulesSerializerMixin,
    JSONTypesMixin,
    serializers.ModelSerializer[Environment],
):
    """A deploy target. ``pool`` lists runner names in order: the primary first."""

    pool = serializers.ListField(
        child=serializers.CharField(max_length=100),
        max_length=20,
        help_text="Runner names in pool order; the first is the primary.",
    )
    pool_status = serializers.SerializerMethodField(
        help_text="Each pool runner with its deploy eligibility now."
    )
    freeze_windows = FreezeWindowSerializer(
        many=True,
        read_only=True,
        help_text="Freeze windows (edited at /api/v1/freeze-windows/).",
    )
    frozen = serializers.SerializerMethodField(
        help_text="Reason of the freeze window in force now; null when none."
    )
    frozen_until = serializers.SerializerMethodField(
        help_text="When the freeze in force now ends (windows that overlap or "
        "follow one another count as one, looking at most a year ahead); null when "
        "not frozen."
    )
    required_secrets = serializers.ListField(
        child=serializers.CharField(
            max_length=100, validators=[github_names.validate_secret_name]
        ),
        max_length=50,
        required=False,
        help_text="Secret names the workflow needs (repository or environment).",
    )

    class Meta:
        model = Environment
        fields = [
            "name",
            "github_environment",
            "repository",
            "workflow_file",
            "default_ref",
            "pool",
            "pool_status",
            "pickup_timeout",
            "gate_timeout",
            "busy_wait",
            "approval_timeout",
            "signoffs_required",
            "signoff_ttl",
            "max_attempts",
            "required_secrets",
            "block_on_overdue_secrets",
            "heartbeat_policy",
            "exporter_policy",
            "canary_policy",
            "canary_interval_minutes",
            "policy",
            "change_ticket_pattern",
            *RULE_FIELDS,
            "jira_allowed_statuses",
            "production",
            "paused",
            "paused_reason",
            "paused_by",
            "paused_at",
            "freeze_windows",
            "frozen",
            "frozen_until",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at", "paused_by", "paused_at"]
        extra_kwargs = {
            "pickup_timeout": {"min_value": 1, "max_value": 86400},
            "gate_timeout": {"min_value": 0, "max_value": 86400},
            # GitHub holds a waiting job for up to 30 days.
            "approval_timeout": {"min_value": 1, "max_value": 30 * 86400},
            "busy_wait": {
                "min_value": 0,
                "max_value": 86400,
                "help_text": "Seconds to wait for the preferred runner while it is "
                "busy with another job before taking the next idle healthy runner "
                "(0: never wait).",
            },
            "max_attempts": {"min_value": 1, "max_value": 10},
            "signoffs_required": {"min_value": 0, "max_value": 10},
            "signoff_ttl": {"min_value": 60, "max_value": 30 * 86400},
        }

    def to_representation(self, instance: Environment) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["pool"] = [entry.runner.name for entry in instance.pool()]
        return data

    def get_frozen(self, env: Environment) -> str | None:
        window = env.freeze_at(_now(self))
        return window.reason if window else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_frozen_until(self, env: Environment) -> str | None:
        until = env.frozen_until(_now(self))
        return (
            None
            if until is None
            else serializers.DateTimeField().to_representation(until)
        )

    @extend_schema_field(PoolRunnerSerializer(many=True))
    def get_pool_status(self, env: Environment) -> list[dict[str, Any]]:
        _, pool = env.pick_runner()
        return [
            {
                "position": choice.position,
                "runner": choice.runner.name,
                "state": choice.runner.state,
                "eligible": choice.eligible,
                "ineligibility_reasons": choice.ineligibility_reasons,
                "notes": choice.notes,
                "trusted": choice.decision_detail().get("trusted"),
            }
            for choice in pool
        ]

    def validate_pool(self, names: list[str]) -> list[Runner]:
        if len(set(names)) != len(names):
            raise serializers.ValidationError("a runner may appear only once")
        found = {r.name: r for r in Runner.objects.filter(name__in=names)}
        unknown = [name for name in names if name not in found]
        if unknown:
            raise serializers.ValidationError(f"unknown runners: {', '.join(unknown)}")
        return [found[name] for name in names]

    def create(self, validated_data: dict[str, Any]) -> Environment:
        pool = validated_data.pop("pool")
        with transaction.atomic():
            env = super().create(validated_data)
            env.set_pool(pool)
        return env

    def update(
        self, instance: Environment, validated_data: dict[str, Any]
    ) -> Environment:
        pool = validated_data.pop("pool", None)
        with transaction.atomic():
            env = super().update(instance, validated_data)
            if pool is not None:
                env.set_pool(pool)
        return env


class DeployRequestSerializer(JSONTypesMixin, serializers.Serializer[dict[str, Any]]):
    """What to deploy where. Send an ``Idempotency-Key`` header to retry safely."""

    environment = serializers.CharField(max_length=100)
    ref = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        help_text="Branch or tag; the environment's default ref if empty. It is "
        "resolved to its commit when the request is accepted.",
    )
    sha = serializers.RegexField(
        r"^[0-9a-f]{40}$",
        required=False,
        allow_blank=True,
        help_text="Deploy this exact commit (40 lowercase hex) of ``ref`` instead of "
        "the ref's newest one; the job fails fast if it is not on the ref.",
        error_messages={"invalid": "a full 40-character lowercase hexadecimal SHA"},
    )
    change_ticket = serializers.CharField(
        max_length=100, required=False, allow_blank=True
    )
    break_glass_reason = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        help_text="Admins only: deploy past a freeze window, a deploy rule, the "
        "approvals in the control plane, or a JIRA that cannot check the change "
        "ticket, for this reason (audited; the ``break_glass`` event names what "
        "was broken).",
    )


class DeployAttemptSerializer(serializers.ModelSerializer[DeployAttempt]):
    runner = serializers.CharField(source="runner.name", read_only=True)
    html_url = OptionalURLField(
        help_text="The workflow run on GitHub; null until it is known."
    )

    class Meta:
        model = DeployAttempt
        fields = [
            "number",
            "runner",
            "state",
            "token",
            "github_run_id",
            "html_url",
            "job_runner_name",
            "conclusion",
            "failover_reason",
            "created_at",
            "dispatched_at",
            "picked_up_at",
            "cancel_requested_at",
            "finished_at",
        ]
        read_only_fields = fields


class DeployEventSerializer(serializers.ModelSerializer[DeployEvent]):
    attempt = serializers.IntegerField(
        source="attempt.number", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = DeployEvent
        fields = ["kind", "attempt", "message", "detail", "created_at"]
        read_only_fields = fields


class DeployRunSerializer(serializers.ModelSerializer[DeployRun]):
    """A deploy run; its attempts and timeline are on the detail route."""

    environment = serializers.CharField(source="environment.name", read_only=True)
    runbook = serializers.SerializerMethodField(
        help_text="Path of the runbook for the failure reason, null when none."
    )
    attempt_count = serializers.IntegerField(read_only=True, default=0)
    runner = serializers.CharField(
        source="runner_name",
        read_only=True,
        allow_null=True,
        default=None,
        help_text="The runner of the latest attempt.",
    )
    break_glass = serializers.BooleanField(
        read_only=True, default=False, help_text="An admin broke glass for it."
    )

    class Meta:
        model = DeployRun
        fields = [
            "id",
            "environment",
            "ref",
            "sha",
            "state",
            "reason",
            "message",
            "runbook",
            "requester_name",
            "change_ticket",
            "attempt_count",
            "runner",
            "break_glass",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_runbook(self, run: DeployRun) -> str | None:
        return runbook_url(run.runbook_slug) or None


class DeployRunDetailSerializer(DeployRunSerializer):
    attempts = DeployAttemptSerializer(many=True, read_only=True)
    events = DeployEventSerializer(many=True, read_only=True)
    signoff = serializers.SerializerMethodField(
        help_text="Approvals in the control plane; null when none were required."
    )

    class Meta(DeployRunSerializer.Meta):
        fields = [*DeployRunSerializer.Meta.fields, "signoff", "attempts", "events"]
        read_only_fields = fields

    @extend_schema_field(SignOffStatusSerializer(allow_null=True))
    def get_signoff(self, run: DeployRun) -> dict[str, Any] | None:
        if run.timeout("signoffs_required") <= 0:
            return None
        judged = signoff.verdict(run, timezone.now()).as_dict()
        return dict(SignOffStatusSerializer(judged).data)


class DeployErrorSerializer(serializers.Serializer[dict[str, Any]]):
    """A refused deploy request: what, why (``code``) and which field."""

    detail = serializers.CharField()
    code = serializers.CharField()
    field = serializers.CharField(allow_blank=True)


class DeployedSerializer(serializers.Serializer[Any]):
    """What one environment runs now: its latest succeeded deploy, or nulls."""

    environment = serializers.CharField(source="environment.name")
    deploy = serializers.IntegerField(source="run.pk", allow_null=True, default=None)
    sha = serializers.CharField(source="run.sha", allow_null=True, default=None)
    ref = serializers.CharField(source="run.ref", allow_null=True, default=None)
    requester_name = serializers.CharField(
        source="run.requester_name", allow_null=True, default=None
    )
    change_ticket = serializers.CharField(
        source="run.change_ticket", allow_null=True, default=None
    )
    finished_at = serializers.DateTimeField(
        source="run.finished_at", allow_null=True, default=None
    )
    runner = serializers.CharField(source="runner_name", allow_blank=True)
    run_url = serializers.CharField(allow_blank=True, help_text="The GitHub run.")
    deployment_url = serializers.CharField(
        allow_blank=True, help_text="GitHub's deployment, when known."
    )
    previous_sha = serializers.CharField(
        source="previous.sha", allow_null=True, default=None
    )
    previous_deploy = serializers.IntegerField(
        source="previous.pk", allow_null=True, default=None
    )
    compare_url = serializers.CharField(
        allow_blank=True,
        help_text="GitHub's compare view from the previous deploy's commit to this "
        "one; blank when there is none or the commit is the same.",
    )
