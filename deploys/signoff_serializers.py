"""API shapes of approvals in the control plane: a deploy's verdict, and the body
of ``approve/`` and ``reject/``."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from controlplane.serializers import JSONTypesMixin


class SignOffApprovalSerializer(serializers.Serializer[dict[str, Any]]):
    by = serializers.CharField(help_text="The SRE who approved.")
    at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(
        help_text="Until when it counts, if the deploy is not dispatched by then."
    )
    reason = serializers.CharField(allow_blank=True)


class SignOffStatusSerializer(serializers.Serializer[dict[str, Any]]):
    """Whether the deploy's approvals in the control plane are in, and why not
    (not GitHub's reviewers: see the events ``approval_waiting``)."""

    satisfied = serializers.BooleanField()
    approvals_required = serializers.IntegerField(
        source="required",
        help_text="Approvals required when the deploy was requested.",
    )
    approvals = SignOffApprovalSerializer(many=True, help_text="Counting now.")
    expired = SignOffApprovalSerializer(
        many=True, help_text="Expired before the dispatch: no longer counting."
    )
    rejected_by = serializers.CharField(allow_blank=True)
    rejection = serializers.CharField(allow_blank=True)
    break_glass = serializers.CharField(
        allow_blank=True,
        help_text='"who: reason" when an admin broke glass and skipped them.',
    )
    awaited_from = serializers.CharField(
        allow_blank=True,
        help_text='Who may approve now ("any SRE but alice"); blank when nothing '
        "is awaited.",
    )
    why = serializers.CharField(help_text="The verdict in words.")


class SignOffDecisionSerializer(JSONTypesMixin, serializers.Serializer[dict[str, Any]]):
    reason = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        help_text="Why (audited, on the deploy's timeline); required to reject.",
    )
