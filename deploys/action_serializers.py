"""API request bodies of the actions on environments and deploys: redeploy, cancel,
pause and resume, a review sent to GitHub."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from controlplane.serializers import JSONTypesMixin


class RedeploySerializer(JSONTypesMixin, serializers.Serializer[dict[str, Any]]):
    """Which environment's last succeeded deploy to repeat."""

    environment = serializers.CharField(max_length=100)
    break_glass_reason = serializers.CharField(
        max_length=500, required=False, allow_blank=True
    )


class CancelSerializer(JSONTypesMixin, serializers.Serializer[dict[str, Any]]):
    note = serializers.CharField(max_length=500, required=False, allow_blank=True)


class PauseSerializer(JSONTypesMixin, serializers.Serializer[dict[str, Any]]):
    reason = serializers.CharField(
        max_length=500,
        help_text="Why: shown wherever deploys are refused (to resume: a note).",
    )


class ReviewSerializer(JSONTypesMixin, serializers.Serializer[dict[str, Any]]):
    state = serializers.ChoiceField(
        choices=["approved", "rejected"],
        help_text="Approve or reject the deployment GitHub's protection rules hold.",
    )
    comment = serializers.CharField(max_length=500, required=False, allow_blank=True)
