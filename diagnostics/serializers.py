"""API shapes of diagnostics and agent-install runs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from diagnostics.models import HostRun


class HostRunSerializer(serializers.ModelSerializer[HostRun]):
    runner = serializers.CharField(source="runner.name", read_only=True)

    class Meta:
        model = HostRun
        fields = [
            "token",
            "runner",
            "kind",
            "state",
            "requested_by",
            "requested_at",
            "deadline",
            "finished_at",
            "detail",
            "html_url",
            "reported_at",
            "facts",
            "report",
        ]
        read_only_fields = fields


class ChangeSerializer(serializers.Serializer[dict[str, Any]]):
    fact = serializers.CharField()
    before = serializers.JSONField()
    after = serializers.JSONField()


class RunnerDiagnosticsSerializer(serializers.Serializer[dict[str, Any]]):
    """A runner's diagnostics: the run in flight, the latest report, what changed
    since the one before it, and the recent runs (without their reports)."""

    runner = serializers.CharField()
    in_flight = HostRunSerializer(allow_null=True)
    latest = HostRunSerializer(allow_null=True)
    changes = ChangeSerializer(many=True)
    history = HostRunSerializer(many=True)
    offer_agent_install = serializers.BooleanField()
